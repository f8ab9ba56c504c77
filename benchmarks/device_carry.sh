#!/usr/bin/env bash
# Prepare what benchmarks/device_check.sh needs on a bare GPU machine that cannot reach PyPI
# (Python 3.12, torch preinstalled; no envpool, dacite or gymnasium), under the 64 MiB a call may
# carry. Run here, in the repo root, once per session:
#
#   benchmarks/device_carry.sh            # writes .whl/ (git-ignored through .git/info/exclude)
#
# then, on the device machine, with `.whl` carried:
#
#   bash benchmarks/device_carry.sh --install && bash benchmarks/device_check.sh
#
# Why a slimmed envpool: its wheel (53 MB) and envpool-assets (62 MB) hold every env family; the
# check needs only Atari. We keep envpool's Python files and the Atari extension, drop the other
# families' compiled extensions, register only the Atari envs, and keep only the Atari ROMs of
# envpool-assets (0.6 MB). Nothing of it enters the project; it is a carry for one machine.
set -euo pipefail
py_version=3.12
if [[ "${1:-}" == "--install" ]]; then
  site=/tmp/stackrl-site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  cp -r .whl/site/* "$site"/
  mkdir -p /tmp/stackrl-pkg /tmp/stackrl-bin
  ln -sfn "$PWD" /tmp/stackrl-pkg/stackrl
  py=$(command -v python3)
  # Wrappers, not symlinks: a virtual environment's python finds its site-packages from its own path.
  printf '#!/bin/sh\nexec %s -m stackrl.deploy.cli "$@"\n' "$py" > /tmp/stackrl-bin/stackrl
  printf '#!/bin/sh\nexec %s "$@"\n' "$py" > /tmp/stackrl-bin/python
  chmod +x /tmp/stackrl-bin/stackrl /tmp/stackrl-bin/python
  echo "export PYTHONPATH=/tmp/stackrl-pkg:$site PATH=/tmp/stackrl-bin:\$PATH PYTHONUNBUFFERED=1" > /tmp/stackrl-env.sh
  echo "installed; run: . /tmp/stackrl-env.sh"
  exit 0
fi

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl/site
platforms=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64; do
  platforms+=(--platform "$p")
done
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" \
    --implementation cp "${platforms[@]}" -d "$1" "$2"
}
# Pinned to the versions the project is tested with here.
for w in dacite==1.9.2 dm-env==1.6 grpcio==1.85.3 protobuf==7.36.2 gymnasium==1.4.0 \
         farama-notifications==0.0.6 optree==0.20.0; do
  download .whl "$w"
done
tmp=$(mktemp -d)
download "$tmp" envpool==1.2.5
download "$tmp" envpool-assets==0.3.0
(cd "$tmp" && for w in *.whl; do unzip -q "$w"; done)
cp -r "$tmp"/envpool "$tmp"/envpool.libs "$tmp"/envpool-1.2.5.dist-info .whl/site/
find .whl/site/envpool -name '*.so' -not -path '*/atari/*' -not -path '*/python/*' -delete
rm -rf .whl/site/envpool/vizdoom/bin
sed -i -E '/^import envpool\.(box2d|classic_control|gfootball|highway|jumanji|minigrid|mujoco|pgx|procgen|toy_text|vizdoom)/d' \
  .whl/site/envpool/entry.py
mkdir -p .whl/site/envpool_assets/atari
cp "$tmp"/envpool_assets/__init__.py .whl/site/envpool_assets/
cp -r "$tmp"/envpool_assets/atari/roms .whl/site/envpool_assets/atari/
rm -rf "$tmp"
du -sh .whl
