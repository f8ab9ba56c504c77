"""`stackrl eval RUN --video`: short clips of the contextual follower playing under the cheapest price,
the dearest price and the learned schedule, so a reader sees it stop shooting when shots get dear.

Each clip is one game played from the start for `steps` play steps (followers sample their policy
with a fixed seed, as `stackrl eval` does; the leader greedy). A frame is the newest 84x84 grey
frame of the follower's own observation, enlarged, with the posted price and a red bar on steps
where the follower fired. The clips are written as a TensorBoard video (an animated-GIF image
summary in `RUN/tb`, next to the training curves; written with Pillow, so no moviepy is needed)
and as one small GIF with the clips side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stackrl.envs.base import LEADER
from stackrl.envs.factory import env_spec
from stackrl.experiments.atari_eval import eval_env, load_run
from stackrl.learner.evaluation import play_first_episodes
from stackrl.learner.models import PolicyNet, build_networks

SCALE = 2


def _frame(obs: np.ndarray, price: float, fired: bool) -> np.ndarray:
    """[H, W, 3] uint8: the newest grey frame of a [4, 84, 84] observation, enlarged, with the price
    written on a band at the top and a red bar at the bottom when the follower fired."""
    from PIL import Image, ImageDraw

    grey = np.asarray(obs)[-1]
    img = Image.fromarray(grey).resize(
        (grey.shape[1] * SCALE, grey.shape[0] * SCALE), Image.Resampling.NEAREST
    )
    rgb = Image.new("RGB", (img.width, img.height + 14))
    rgb.paste(img.convert("RGB"), (0, 14))
    draw = ImageDraw.Draw(rgb)
    draw.text((2, 1), f"price {price:.2f}", fill=(255, 255, 0))
    if fired:
        draw.rectangle((0, rgb.height - 4, rgb.width, rgb.height), fill=(255, 0, 0))
    return np.asarray(rgb)


def record_clip(
    env: Any,
    nets: dict[str, PolicyNet],
    source: str,
    table: np.ndarray | None,
    prices: list[float],
    seed: int,
) -> tuple[list[np.ndarray], float]:
    """Frames of game 0 over its first episode, and its fire rate (FIRE actions per play step)."""
    fire = np.asarray(env.base.fire_actions)
    num_phases = env.num_queries
    follower = env.followers[0]
    frames: list[np.ndarray] = []
    fires: list[bool] = []

    def grab(role: str, obs: Any, logits: torch.Tensor, actions: torch.Tensor, live: np.ndarray) -> None:
        if role != follower or not (obs.acting[role][0] and live[0]):
            return
        fired = bool(fire[int(actions[0])])
        posted = int(obs.forced_leader[0])  # the committed price index in play
        if posted < 0:  # an uncommitted leader: its answer for the phase it observes
            posted = int(obs.context[0][int(obs.obs[LEADER][0]) % num_phases])
        price = prices[posted]
        fires.append(fired)
        frames.append(_frame(obs.obs[role][0], price, fired))

    play_first_episodes(env, nets, source, table, seed=seed, sample_followers=True, on_act=grab)
    return frames, float(np.mean(fires)) if fires else 0.0


def frame_ms(fps: int) -> int:
    """A frame's display time: GIF stores hundredths of a second, so a whole number of those."""
    return 10 * max(1, round(100 / fps))


def _side_by_side(clips: list[list[np.ndarray]]) -> list[np.ndarray]:
    n = max(len(c) for c in clips)
    padded = [c + [c[-1]] * (n - len(c)) for c in clips]
    return [np.concatenate([c[i] for c in padded], axis=1) for i in range(n)]


def write_gif(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=frame_ms(fps), loop=0, optimize=True
    )
    return path


def write_tensorboard_video(
    log_dir: Path, tag: str, frames: list[np.ndarray], fps: int, step: int = 0
) -> None:
    """An animated-GIF image summary: what SummaryWriter.add_video writes, encoded with Pillow."""
    import io

    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms(fps), loop=0)
    h, w = frames[0].shape[:2]
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=buf.getvalue())
    writer = SummaryWriter(str(log_dir))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    writer.close()


def run_video(
    run_dir: str | Path, steps: int = 300, seed: int = 4242, fps: int = 15, gif: str | Path | None = None
) -> dict[str, Any]:
    """Record the three clips; returns where they went and each clip's fire rate."""
    run_dir = Path(run_dir)
    cfg, state = load_run(run_dir)
    torch.set_num_threads(cfg.actor.threads)
    env = eval_env(cfg, 1, steps, seed)
    nets = build_networks(env_spec(env), cfg.model)
    for role, net in nets.items():
        net.load_state_dict(state["nets"][role])
        net.eval()
    prices = [float(p) for p in cfg.env.prices]
    k = env.num_queries
    cheap, dear = int(np.argmin(prices)), int(np.argmax(prices))
    clips = {
        f"price {prices[cheap]:g}": ("table", np.full(k, cheap, np.int64)),
        f"price {prices[dear]:g}": ("table", np.full(k, dear, np.int64)),
        "learned schedule": ("policy", None),
    }
    out: dict[str, Any] = {"clips": {}}
    recorded = []
    for name, (source, table) in clips.items():
        frames, rate = record_clip(env, nets, source, table, prices, seed)
        write_tensorboard_video(run_dir / "tb", f"video/{name.replace(' ', '_')}", frames, fps)
        out["clips"][name] = {"frames": len(frames), "fire_rate": rate}
        recorded.append(frames)
    env.close()
    gif_path = Path(gif) if gif else run_dir / "follower_prices.gif"
    out["gif"] = str(write_gif(_side_by_side(recorded), gif_path, fps))
    out["tensorboard"] = str(run_dir / "tb")
    return out
