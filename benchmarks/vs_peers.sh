#!/usr/bin/env bash
# stackrl beside the peers users would pick instead, in one run (issue 15, "peer comparison").
#
#   benchmarks/vs_peers.sh [--seconds S] [--warmup S] [--repeats N] [--out DIR] [--only LIST]
#                          [--install-only] [--sf-env-agents N] [--sf-startup S]
#
# 1. Installs each peer into its own virtual environment under the cache folder
#    (${STACKRL_PEERS_CACHE:-$HOME/.cache/stackrl-peers}), once: CPU torch first, then the peer with
#    torch held at that version, so no install can swap in a CUDA build. Pins that install on
#    Python 3.11 (checked here):
#      Sample Factory 2.1.1 (APPO)  sample-factory==2.1.1 envpool==1.2.5 gymnasium==0.29.1 numpy==1.26.4
#    CleanRL is not run: its PPO scripts (ppo_atari_envpool.py) live only in its git repository; the
#    newest `cleanrl` on PyPI (0.4.8, 2021) predates envpool, plays Atari through gym<0.22 and
#    atari-py and imports pybullet at the top of ppo_atari.py, so it could not run the same env.
#    The one shim a peer needs is in benchmarks/sf_envpool_atari.py (why: see there). No peer code
#    is copied into the project, and the product itself never installs anything.
# 2. Runs, one after another on the same env (envpool SpaceInvaders-v5, Nature CNN, frame stack 4),
#    each for the same window after a warm-up:
#      stackrl bench atari: the preset (1 pass; precision auto: bf16 on a CPU with bf16 instructions),
#        the same in fp32, 4 passes (epochs=4, ppo_clip=0.1) auto and fp32, and the two-player game
#        (space_invaders_pricing_2p) at 1 and 4 passes (no peer plays it: reported beside, unratioed)
#      Sample Factory serial mode (--serial_mode=True: one process, torch on every core), 1 and 4 epochs
#      Sample Factory asynchronous mode (2 rollout workers), 4 epochs
#    Each run leaves DIR/<name>.cmd (its command line) and DIR/<name>.log (+ DIR/<name>.json for ours).
#    --repeats N runs the whole sequence N times (names get @1..@N; ours and the peers alternate, so
#    the machine's drift reaches all of them); the table shows each row's median and every run.
# 3. Prints one table (`stackrl bench peers --from-logs DIR`, experiments/vs_peers.py): agent
#    steps/s, SGD passes per sample, samples per optimizer step, precision, our end-to-end / limit,
#    ours / peer at equal passes; also written to DIR/table.md and DIR/table.json.
#
# --only takes a comma-separated subset of run names (see RUNS below), e.g. for a smoke test:
#   benchmarks/vs_peers.sh --seconds 10 --warmup 10 --only sf_serial_1pass
# Use a quiet machine: the runs share its cores and a neighbour's load shows up as a slower system.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${STACKRL_PEERS_CACHE:-$HOME/.cache/stackrl-peers}"
seconds=120
warmup=30
out=""
only=""
install_only=0
repeats=1
sf_env_agents=8     # games per SF rollout worker (2 workers)
sf_startup=600      # at most this long before SF's first update (env creation, first rollout)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --sf-env-agents) sf_env_agents="$2"; shift 2 ;;
    --sf-startup) sf_startup="$2"; shift 2 ;;
    --install-only) install_only=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "vs_peers.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out="${out:-runs/vs_peers/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out" "$cache"
out="$(cd "$out" && pwd)"

python_bin="${PYTHON:-python3}"
torch_spec="${STACKRL_PEERS_TORCH:-torch==2.13.0}"   # a CPU wheel must satisfy it (checked below)

# -- install ------------------------------------------------------------------------------------------
# make_venv NAME PACKAGES...: the venv at $cache/NAME, made once (a .installed stamp records the pins).
make_venv() {
  local name="$1"; shift
  local venv="$cache/$name"
  local stamp="$venv/.installed"
  local want="$torch_spec $*"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "vs_peers: $name already installed in $venv"
    return
  fi
  echo "vs_peers: installing $name into $venv"
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "$torch_spec"
  # A CUDA torch would pull gigabytes and time other kernels: refuse it before the peer installs.
  local torch_version
  torch_version=$("$venv/bin/python" -c \
    'import torch, sys; sys.exit("CUDA torch " + torch.__version__) if torch.version.cuda else print(torch.__version__)')
  # Hold torch where it is while the peer resolves its dependencies.
  echo "torch==$torch_version" > "$venv/constraints.txt"
  "$venv/bin/pip" install --quiet -c "$venv/constraints.txt" "$@"
  echo "$want" > "$stamp"
}

make_venv sample-factory-2.1.1 \
  "sample-factory[envpool]==2.1.1" "envpool==1.2.5" "gymnasium==0.29.1" "numpy==1.26.4"
sf_python="$cache/sample-factory-2.1.1/bin/python"
"$sf_python" -m pip freeze > "$out/sample-factory-2.1.1.freeze.txt"
[[ $install_only -eq 1 ]] && exit 0

# -- runs ---------------------------------------------------------------------------------------------
# run CONFIG COMMAND...: the command line to NAME.cmd (one argument a line), its output to NAME.log,
# where NAME is CONFIG plus the repeat's suffix (@K when --repeats > 1).
suffix=""
run() {
  local config="$1"; shift
  if [[ -n "$only" && ",$only," != *",$config,"* ]]; then return; fi
  local name="$config$suffix"
  printf '%s\n' "$@" > "$out/$name.cmd"
  echo "vs_peers: $name ($(date -u +%H:%M:%S), load average $(cut -d' ' -f1 /proc/loadavg))"
  cut -d' ' -f1 /proc/loadavg > "$out/$name.load"
  # A failed run leaves its log and no row; the others still run. 124: stopped by `timeout` (SF).
  local rc=0
  "$@" > "$out/$name.log" 2>&1 || rc=$?
  cut -d' ' -f1 /proc/loadavg >> "$out/$name.load"
  if [[ $rc -ne 0 && $rc -ne 124 ]]; then
    echo "vs_peers: $name failed (rc $rc), see $out/$name.log" >&2
  fi
}

ours() {
  local name="$1"; shift
  run "$name" stackrl bench atari --seconds "$seconds" --warmup "$warmup" --json "$out/$name$suffix.json" "$@"
}

# Sample Factory's own envpool Atari example (sf_examples.envpool.atari: Nature CNN "convnet_atari",
# frame skip 4, frame stack 4, its Atari defaults for everything not named here) with
#   --num_workers=2 --env_agents=$sf_env_agents: 2 x 8 = 16 games by default, as our preset's 2 actors x 8
#     games. SF's Atari default (64 games per worker) gathers 2 x 64 x 128 = 16,384 samples before
#     its first update: over a minute on 2 cores, most of a 120 s window.
# SF 2.1.1's --train_for_seconds never fires, so the launcher stops SF warm-up + window after its
# first update (--stop_after_update_s, see sf_envpool_atari.py); `timeout` is the last resort if it
# never starts training. The table measures the window from the log's timestamped FPS reports.
sf() {
  local name="$1"; shift
  run "$name" timeout -s INT -k 30 $((sf_startup + warmup + seconds + 30)) \
    "$sf_python" "$here/sf_envpool_atari.py" --stop_after_update_s=$((warmup + seconds)) \
    --env=atari_spaceinvaders --device=cpu --num_workers=2 --env_agents="$sf_env_agents" \
    --experiment_summaries_interval=3 \
    --train_dir="$out/sf_train" --experiment="$name$suffix" --restart_behavior=overwrite \
    --save_every_sec=100000 --save_best_every_sec=100000 --with_wandb=False "$@"
}

# RUNS: the preset at 1 and 4 passes (its precision: auto, bf16 where the CPU has bf16 instructions),
# the same in fp32 (learner and actors), and the two-player game at 1 and 4 passes; then the peers.
fp32=(--set learner.precision=fp32 --set actor.precision=fp32)
four=(--set learner.epochs=4 --set learner.ppo_clip=0.1)
ours_and_peers() {
  ours stackrl_1pass
  ours stackrl_1pass_fp32 "${fp32[@]}"
  ours stackrl_4pass "${four[@]}"
  ours stackrl_4pass_fp32 "${four[@]}" "${fp32[@]}"
  ours stackrl_2p_1pass --env space_invaders_pricing_2p
  ours stackrl_2p_4pass --env space_invaders_pricing_2p "${four[@]}"
  sf sf_serial_1pass --serial_mode=True --num_epochs=1
  sf sf_serial_4pass --serial_mode=True --num_epochs=4
  sf sf_async_4pass --serial_mode=False --num_epochs=4
}

for ((k = 1; k <= repeats; k++)); do
  if [[ $repeats -gt 1 ]]; then suffix="@$k"; fi
  ours_and_peers
done

stackrl bench peers --from-logs "$out" --warmup "$warmup" --seconds "$seconds"
