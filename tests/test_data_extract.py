import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import CLASSES, make_image_folder, tiny_autoencoder
from gatscale.cli import main as cli
from gatscale.core.config import DataConfig
from gatscale.data import build_train_loader, dataset_info, extract as extract_mod, iterate_images, sample_latents
from gatscale.data.extract import center_crop_arr
from gatscale.data.shards import ShardSet
from gatscale.data.vae import build_tokenizer


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet") / "train")  # 12 images + 1 corrupt


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vae") / "tiny-sd-vae"
    tiny_autoencoder().save_pretrained(path)
    return path


def run(src, dest, *extra):
    return cli(["extract-latents", str(src), str(dest), "--resolution", "16", "--shard-size", "4",
                "--num-workers", "0", "--device", "cpu", *map(str, extra)])


def arrays(dest):
    return {p.relative_to(dest).as_posix(): np.load(p) for p in sorted(dest.glob("shard-*/*.npy"))}


def test_extraction_skips_and_reports_the_corrupt_image(src, vae_dir, tmp_path, capsys):
    dest = tmp_path / "out"
    assert run(src, dest, "--vae", vae_dir) == 0
    assert "skipped unreadable image" in capsys.readouterr().out
    index = json.loads((dest / "index.json").read_text())
    assert (index["num_files"], index["num_images"], index["num_skipped"]) == (13, 12, 1)
    assert index["skipped"][0]["path"].endswith("bee/broken.jpg")
    assert (dest / "skipped.txt").read_text().startswith(str(src / "bee" / "broken.jpg"))
    assert index["class_names"] == list(CLASSES)
    assert [s["count"] for s in index["shards"]] == [4, 4, 3, 1]  # broken.jpg is file 8, the first of shard 2
    assert index["fields"]["latent"] == {"dtype": "float32", "shape": [8, 8, 8]}

    shards = ShardSet(dest)
    labels, images = shards.gather("label", np.arange(12)), shards.gather("image", np.arange(12))
    np.testing.assert_array_equal(labels, [0] * 4 + [1] * 4 + [2] * 4)
    with Image.open(src / "cat" / "3.png") as im:
        np.testing.assert_array_equal(images[11], center_crop_arr(im.convert("RGB"), 16).transpose(2, 0, 1))
    tok = build_tokenizer("sd-vae", str(vae_dir))
    torch.testing.assert_close(torch.from_numpy(shards.gather("latent", np.arange(12))),
                               tok.encode_moments(torch.from_numpy(images)))

    cfg = DataConfig(source="shards", path=str(dest), tokenizer="sd-vae", resolution=16, num_classes=3, num_workers=0)
    info = dataset_info(cfg)
    assert (info.num_images, info.latent_channels, info.latent_size, info.class_names) == (12, 4, 8, list(CLASSES))
    batch = next(build_train_loader(cfg, 6, 0, 1, seed=0))
    decoded = tok.decode(sample_latents(batch["latent"], tok.scale))
    assert decoded.shape == (6, 3, 16, 16) and 0 <= decoded.min() and decoded.max() <= 1
    assert sum(len(y) for _, y in iterate_images(cfg, 5)) == 12


def test_resume_after_a_kill_keeps_finished_shards_and_matches_a_clean_run(src, tmp_path, monkeypatch):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert run(src, clean, "--tokenizer", "pixels") == 0

    real_write, calls = extract_mod.write_shard, []

    def write_then_die(dest, k, *a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while working on the third shard
        calls.append(k)
        return real_write(dest, k, *a, **kw)
    monkeypatch.setattr(extract_mod, "write_shard", write_then_die)
    assert run(src, killed, "--tokenizer", "pixels") == 130  # gatscale.cli: "interrupted", exit 130
    assert not (killed / "index.json").exists() and sorted(p.name for p in killed.glob("shard-*")) == [
        "shard-00000", "shard-00001"]
    stamps = {p: p.stat().st_mtime_ns for p in killed.glob("shard-*/*")}

    monkeypatch.setattr(extract_mod, "write_shard", real_write)
    assert run(src, killed, "--tokenizer", "pixels") == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not rewritten
    got, want = arrays(killed), arrays(clean)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    shards = [json.loads((folder / "index.json").read_text())["shards"] for folder in (killed, clean)]
    assert shards[0] == shards[1]


def test_jobs_over_shard_ranges_complete_one_extraction(src, tmp_path, capsys):
    dest = tmp_path / "out"
    assert run(src, dest, "--tokenizer", "pixels", "--no-images", "--num-jobs", 2, "--job-index", 1) == 0
    assert "index.json is written by the job that finishes last" in capsys.readouterr().out
    assert sorted(p.name for p in dest.glob("shard-*")) == ["shard-00002", "shard-00003"]
    assert run(src, dest, "--tokenizer", "pixels", "--no-images", "--shard-range", "0:2") == 0
    index = json.loads((dest / "index.json").read_text())
    assert index["num_images"] == 12 and "image" not in index["fields"]
    assert run(src, dest, "--tokenizer", "pixels", "--no-images", "--resolution", "8") == 2  # settings changed
    assert "resolution = 16 was recorded" in capsys.readouterr().err


@pytest.mark.slow  # spawns two fresh Python processes (~20-35 s on 2 shared cores)
def test_one_process_per_device_gives_the_same_shards(src, tmp_path):
    assert run(src, tmp_path / "one", "--tokenizer", "pixels") == 0
    assert cli(["extract-latents", str(src), str(tmp_path / "two"), "--resolution", "16", "--shard-size", "4",
                "--num-workers", "0", "--device", "cpu,cpu", "--tokenizer", "pixels"]) == 0
    got, want = arrays(tmp_path / "two"), arrays(tmp_path / "one")
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing", "{tmp}/o"], "SRC = '.*missing': folder not found"),
    (["{tmp}/empty", "{tmp}/o"], "no class sub-folders"),
    (["{tmp}/noimages", "{tmp}/o"], "no image files"),
    (["{src}", "{tmp}/o", "--shard-range", "3:9"], r"--shard-range = '3:9': expected A:B with 0 <= A < B <= 4"),
    (["{src}", "{tmp}/o", "--shard-range", "x"], "--shard-range = 'x'"),
    (["{src}", "{tmp}/o", "--num-jobs", "2", "--job-index", "2"], "--job-index = 2"),
    (["{src}", "{tmp}/o", "--vae", "{tmp}/no-vae"], "no such folder"),
])
def test_bad_input_is_a_clear_error(src, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noimages" / "a").mkdir(parents=True)
    (tmp_path / "noimages" / "a" / "x.txt").write_text("x")
    argv = [a.format(tmp=tmp_path, src=src) for a in args]
    assert cli(["extract-latents", *argv, "--shard-size", "4", "--resolution", "16", "--num-workers", "0"]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("shard-*"))


def test_center_crop_follows_adm():
    res = 8
    bands = np.zeros((res, 3 * res, 3), np.uint8)
    bands[:, res:2 * res] = 200  # the middle third survives a centre crop untouched (no resize: short side = res)
    np.testing.assert_array_equal(center_crop_arr(Image.fromarray(bands), res), bands[:, res:2 * res])
    checker = (np.indices((4 * res, 4 * res)).sum(0) % 2 * 255).astype(np.uint8)
    out = center_crop_arr(Image.fromarray(np.stack([checker] * 3, -1)), res)  # two BOX halvings average 2x2 cells
    assert out.shape == (res, res, 3) and np.abs(out.astype(int) - 127.5).max() <= 0.5
