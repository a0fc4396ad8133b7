"""Pin the prod overlay's images by digest: resolve each tag with a registry client and write
kustomize `images:` entries into `kuberay/overlays/prod/kustomization.yaml`.

The images are those of the rendered prod overlay's pods. The project's own images
(cryptopred-ray, cryptopred-mlflow) are resolved in IMAGE_REGISTRY at IMAGE_TAG and renamed to
that registry; without a registry they are left alone. The resolver is a command with `{image}`
in it that prints the digest (`sha256:...`), by default `crane digest {image}`:

    make pin-images IMAGE_REGISTRY=ghcr.io/<you>                 # = this script
    python kuberay/pin_images.py --registry ghcr.io/<you> \\
        --resolver 'docker buildx imagetools inspect {image} --format {{.Manifest.Digest}}'
    python kuberay/pin_images.py --clear                         # back to tags only
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROD = ROOT / "kuberay" / "overlays" / "prod"
BEGIN = "# --- images pinned by digest (make pin-images) ---"
END = "# --- end of pinned images ---"
OWN_IMAGES = ("cryptopred-ray", "cryptopred-mlflow")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_RESOLVER = "crane digest {image}"


def split_image(image: str) -> tuple[str, str]:
    """(name, tag) of a tagged reference; the tag is '' when there is none."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if digest or ":" not in last:
        return name, ""
    return name.rsplit(":", 1)[0], name.rsplit(":", 1)[1]


def rendered_images(overlay: Path = PROD) -> list[str]:
    """Every container image of the rendered overlay, sorted, once each."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    )
    found: set[str] = set()
    for text in re.findall(r"^\s*(?:- )?image: (\S+)$", done.stdout, re.M):
        found.add(text.strip("\"'"))
    return sorted(found)


def resolve(image: str, resolver: str) -> str:
    """The digest the resolver prints for `image`."""
    command = [part.replace("{image}", image) for part in shlex.split(resolver)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    match = DIGEST.search(done.stdout)
    if done.returncode != 0 or not match:
        raise SystemExit(f"cannot resolve {image}: {done.stderr.strip() or done.stdout.strip()}")
    return match.group(0)


def image_entries(
    images: list[str], resolver: str, registry: str, tag: str
) -> list[dict[str, str]]:
    """kustomize `images:` entries that pin every image by digest."""
    entries = []
    for image in images:
        name, image_tag = split_image(image)
        if not image_tag:
            continue  # already pinned by digest
        if name in OWN_IMAGES:
            if not registry:
                continue  # local Kind images: nothing to resolve
            pushed = f"{registry.rstrip('/')}/{name}"
            digest = resolve(f"{pushed}:{tag}", resolver)
            entries.append({"name": name, "newName": pushed, "digest": digest})
        else:
            entries.append({"name": name, "digest": resolve(image, resolver)})
    return entries


def write_block(kustomization: str, entries: list[dict[str, str]]) -> str:
    """The kustomization text with its pinned-images block replaced (dropped when empty)."""
    pattern = re.compile(rf"\n?{re.escape(BEGIN)}\n.*?{re.escape(END)}\n", re.S)
    text = pattern.sub("", kustomization)
    if not entries:
        return text
    body = yaml.safe_dump({"images": entries}, sort_keys=False)
    return f"{text.rstrip()}\n{BEGIN}\n{body}{END}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default="", help="where cryptopred-ray/-mlflow are pushed")
    parser.add_argument("--tag", default="0.1.0", help="the tag pushed there (IMAGE_TAG)")
    parser.add_argument("--resolver", default=DEFAULT_RESOLVER, help="command printing a digest")
    parser.add_argument("--clear", action="store_true", help="remove the pinned images")
    parser.add_argument("--overlay", type=Path, default=PROD, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path = args.overlay / "kustomization.yaml"
    original = path.read_text()
    text = write_block(original, [])
    entries = []
    if not args.clear:
        path.write_text(text)  # render from the tags, not from the previous pins
        try:
            entries = image_entries(
                rendered_images(args.overlay), args.resolver, args.registry, args.tag
            )
        except BaseException:
            path.write_text(original)
            raise
    path.write_text(write_block(text, entries))
    for entry in entries:
        print(f"{entry.get('newName', entry['name'])}@{entry['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
