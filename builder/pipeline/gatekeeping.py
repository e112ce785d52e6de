"""The gate, again, on evidence that was published: ``tfimg promote`` and ``tfimg build --registry``.

Publishing (:mod:`builder.publish`) does not know the scan stage; where a published digest is judged
under a policy now, the pipeline hands it a :data:`~builder.publish.curation.Judge` made here, which
re-evaluates the attached Trivy report with :func:`builder.scan.gate.evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from builder.errors import PublishRefused, RegistryError, TfimgError
from builder.image import inputs
from builder.infra import clock
from builder.infra.engine import Engine
from builder.infra.report_models import JsonObject, PublishedSection
from builder.infra.ui import UI
from builder.publish import curation, evidence, push
from builder.render import context as render
from builder.scan import gate, trivy_report, trust
from builder.scan import policy as policies
from builder.spec.loader import LoadedVariant


def judge(policy: policies.Policy | None, label: str | Path | None = None) -> curation.Judge:
    """The :data:`~builder.publish.curation.Judge` for ``policy`` (None: the recorded decision).

    ``label``: how the policy was named (``--policy``), in the ``how`` it gives.
    """
    if policy is None:
        return curation.recorded
    name = label if label is not None else policy.file

    def decide(doc: evidence.Evidence, trivy: JsonObject | None) -> tuple[str, str]:
        recorded = evidence.verdict(doc)
        if recorded in ("checks-failed", "checks-missing", "no-evidence"):
            return recorded, "recorded checks"
        if trivy is None:
            return "unscanned", f"no Trivy report attached, so {name} cannot be evaluated"
        build, scan = doc.section("build"), doc.section("scan")
        rep = trivy_report.from_data(trivy, source="the attached Trivy report")
        image_id = build.get("image_id")
        try:   # a report of another image than the build the evidence records says nothing of it
            trust.check_image(rep, str(image_id) if image_id else None, source="the attached Trivy report",
                              where="the attached report.json")
        except TfimgError as exc:
            return "unscanned", exc.message
        layers = build.get("base_layers")
        scanners = scan.get("scanners")
        result = gate.evaluate(rep, policy,
                               [str(x) for x in layers] if isinstance(layers, list) and layers else None,
                               clock.today(), bool(doc.section("gate").get("base_digest_pinned")),
                               scanners=[str(s) for s in scanners] if isinstance(scanners, list) else [],
                               scanners_from="scan record")
        why = "; ".join(result.reasons[:3])
        return result.decision, f"re-evaluated with {name}" + (f": {why}" if why else "")

    return decide


def policy_decision(doc: evidence.Evidence, policy: Path | None, trivy: JsonObject | None) -> tuple[str, str]:
    """(decision, how) for evidence under the policy file ``policy`` (None: as recorded)."""
    return judge(policies.load(policy) if policy is not None else None, policy)(doc, trivy)


def signature_keys(policy: policies.Policy | None, keys: list[Path] | None) -> list[Path]:
    """The public keys promotion must verify with: ``keys``, else the policy's ``publish.public_key``
    when the policy has ``publish.require_signatures``; [] when no verification is asked for."""
    keys = list(keys or [])
    if policy is None or not policy.publish.require_signatures:
        return keys
    if not keys and policy.publish.public_key:
        keys = [(Path(policy.file).parent / policy.publish.public_key) if policy.file
                else Path(policy.publish.public_key)]
    if not keys:
        raise PublishRefused(f"{policy.file} requires signatures but names no public key",
                             hint="Pass `--key PUB.pem` or set publish.public_key in the policy.")
    return keys


def promote(source: str, target: str, *, policy: Path | None = None, dry_run: bool = False,
            keys: list[Path] | None = None, signer: Any | None = None) -> curation.Promotion:
    """``tfimg promote``: :func:`builder.publish.curation.promote` under the target ``policy`` (loaded
    once), verifying signatures when the policy requires them or ``keys`` are given; the promotion
    record is signed with ``signer`` (required when the policy requires signatures)."""
    pol = policies.load(policy) if policy is not None else None
    return curation.promote(source, target, judge=judge(pol, policy), verify_keys=signature_keys(pol, keys),
                            signer=signer, require_signer=bool(pol and pol.publish.require_signatures),
                            dry_run=dry_run)


def already_published(loaded: LoadedVariant, registry: str, base_ref: str, policy: policies.Policy,
                      policy_label: str | Path | None, ui: UI, engine: Engine) -> PublishedSection | None:
    """``--registry``: the published digest with this variant's input hash whose evidence passes
    the current policy, or None (then the variant is built as usual)."""
    found = inputs.remote_base(base_ref, engine)
    if found is None:
        ui.warn(f"--registry: the digest of the base {base_ref} could not be found without pulling it; building")
        return None
    rendered = render.render(loaded)
    ihash = inputs.input_hash(rendered.context_hash(), found[0], inputs.secret_choice(loaded).used, base_ref)
    try:
        published = push.find_published(registry, loaded.name, ihash, judge(policy, policy_label))
    except RegistryError as exc:
        ui.warn(f"--registry: {exc.message}; building")
        return None
    except requests.RequestException as exc:
        ui.warn(f"--registry: {registry} could not be reached ({type(exc).__name__}); building")
        return None
    if published is None:
        ui.info(f"{loaded.name}: not published yet at {registry} (input hash {ihash[7:19]})")
        return None
    if published.decision != "pass":
        ui.warn(f"{published.repository}@{published.digest} has the same inputs but its evidence does not pass "
                f"the current policy ({published.decision}: {published.how}); building")
        return None
    return published
