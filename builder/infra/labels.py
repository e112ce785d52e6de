"""The ``io.tfimg.*`` image and container labels (and the one artifact annotation), in one place."""

VARIANT = "io.tfimg.variant"        # the variant's name
PROFILE = "io.tfimg.profile"        # the base profile its checks compare against
SPEC_HASH = "io.tfimg.spec-hash"    # hash of the merged spec the image was rendered from
USER = "io.tfimg.user"              # name:uid:gid of the image's user
INPUT_HASH = "io.tfimg.input-hash"  # everything that decides a build (context, base, secret identities)
TEMPORARY = "io.tfimg.temporary"    # containers tfimg starts and removes
RUN = "io.tfimg.run"                # the checks run a container belongs to
SUBJECT = "io.tfimg.subject"        # evidence manifests: the digest they describe
LOCAL_REPO = "tfimg/{name}"         # the local repository of a variant's images (tfimg/<variant>:<tag>)
