"""The scan and gate stage: running Trivy, Trivy's report models, gate policies, the gate
itself, its outputs (SARIF, Markdown, table) and the stage that ties them together.
"""
