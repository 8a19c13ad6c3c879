"""FaceDataset, the loader and the repeatable test-time degradation."""
import logging

import cv2
import numpy as np
import pytest
from conftest import need_shared

from data_loader import degrade_test_face
from data_loader.dataset import DegradedFaces, FaceBatchSampler, FaceDataset, build_loader, resolve_mode
from data_loader.degradations import TRAIN_STREAM, degrade, keyed_rngs
from utils.config import DegradationConfig
from utils.errors import UserError
from utils.image_io import list_images, read_image


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Six real faces at 96 px in a nested folder (FFHQ-like layout), written once per module."""
    root = tmp_path_factory.mktemp("faces")
    sources = list_images(str(need_shared("data", "celeba_hq")))[:6]
    for i, src in enumerate(sources):
        sub = root / f"{(i // 3) * 1000:05d}"
        sub.mkdir(exist_ok=True)
        small = cv2.resize(read_image(src), (96, 96), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(sub / f"{i:05d}.png"), small[:, :, ::-1])
    return root


def collect(loader, part=0):
    batches = list(loader)
    if isinstance(batches[0], dict):
        return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}
    batches = [b[part] if isinstance(b, list) else b for b in batches]
    return np.concatenate([b.numpy() for b in batches])


def test_items_are_chw_in_range_and_pairs_are_lq_hq(faces):
    ds = FaceDataset(str(faces), 64, mode="cpu", seed=1)
    assert len(ds) == 6 and [p.split("/")[-2] for p in ds.files] == ["00000"] * 3 + ["01000"] * 3
    lq, hq = ds[0]
    for x in (lq, hq):
        assert x.shape == (3, 64, 64) and x.dtype == np.float32 and -1 <= x.min() and x.max() <= 1
    assert np.abs(lq - hq).mean() > 0.01  # the first is the degraded one
    only_hq = FaceDataset(str(faces), 64, mode="device")[0]
    assert only_hq.shape == (3, 64, 64)


@pytest.mark.parametrize("interpolation,flag", [("area", cv2.INTER_AREA), ("nearest", cv2.INTER_NEAREST),
                                                ("bilinear", cv2.INTER_LINEAR), ("bicubic", cv2.INTER_CUBIC)])
def test_interpolation_modes(faces, interpolation, flag):
    ds = FaceDataset(str(faces), 40, interpolation=interpolation, mode="device")
    expected = cv2.resize(read_image(ds.files[2]), (40, 40), interpolation=flag)
    np.testing.assert_allclose(ds[2], expected.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)


def test_missing_empty_and_unknown(tmp_path):
    with pytest.raises(UserError, match=f"image folder not found: {tmp_path / 'nope'}"):
        FaceDataset(str(tmp_path / "nope"), 64)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=f"no images .* found under {tmp_path}"):
        FaceDataset(str(tmp_path), 64)
    with pytest.raises(UserError, match="data.interpolation"):
        FaceDataset(str(tmp_path), 64, interpolation="lanczos")
    assert resolve_mode("auto", "gpu:0") == "device" and resolve_mode("auto", "cpu") == "cpu"
    with pytest.raises(UserError, match="data.degrade_on"):
        resolve_mode("tpu", "cpu")


def test_bad_files_are_skipped_with_one_warning(tmp_path, caplog):
    good = np.full((32, 32, 3), 120, np.uint8)
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), good)
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "d.jpg").write_bytes(b"")
    ds = FaceDataset(str(tmp_path), 32, mode="device")
    with caplog.at_level(logging.WARNING, logger="data_loader.dataset"):
        items = [ds[i] for i in range(len(ds))] + [ds[1]]
    # b.png -> the next readable file (c.png); d.jpg (last) wraps around to a.png.
    assert len(items) == 5 and all(np.allclose(x, 120 / 127.5 - 1) for x in items)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and "b.png" in warned[0] and "d.jpg" in warned[1]
    assert ds.skipped_files() == [str(tmp_path / "b.png"), str(tmp_path / "d.jpg")]
    assert ds.summary().startswith("skipped 2 of 4 images") and "b.png" in ds.summary()


def test_bad_files_seen_by_workers_reach_the_summary(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"broken")
    ds = FaceDataset(str(tmp_path), 32, mode="device")
    batches = list(build_loader(ds, 2, num_workers=1, shuffle=False, drop_last=False, rank=0, world_size=1))
    assert len(batches) == 1 and ds.skipped_files() == [str(tmp_path / "b.png")]


def test_no_readable_file_at_all(tmp_path):
    (tmp_path / "x.png").write_bytes(b"broken")
    with pytest.raises(UserError, match="none of the 1 images"):
        FaceDataset(str(tmp_path), 32)[0]


def test_gray_16bit_and_alpha_inputs_are_converted(tmp_path):
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    cv2.imwrite(str(tmp_path / "1_gray.png"), gray)
    cv2.imwrite(str(tmp_path / "2_deep.png"), (np.dstack([gray] * 3).astype(np.uint16) * 257))
    bgra = np.dstack([np.zeros((32, 32, 3), np.uint8), np.full((32, 32), 0, np.uint8)])
    cv2.imwrite(str(tmp_path / "3_alpha.png"), bgra)  # fully transparent black -> white
    ds = FaceDataset(str(tmp_path), 32, mode="device")
    expected_gray = np.broadcast_to(gray / 127.5 - 1, (3, 32, 32))
    np.testing.assert_allclose(ds[0], expected_gray, atol=1e-6)
    np.testing.assert_allclose(ds[1], expected_gray, atol=1e-6)
    np.testing.assert_allclose(ds[2], 1.0)
    assert all(ds[i].shape == (3, 32, 32) for i in range(3))


def test_test_time_degradation_is_keyed_by_seed_and_index(faces):
    image = read_image(list_images(str(faces))[0])
    a = degrade_test_face(image, seed=4, index=10)
    assert np.array_equal(a.network_input, degrade_test_face(image.copy(), seed=4, index=10).network_input)
    assert not np.array_equal(a.network_input, degrade_test_face(image, seed=4, index=11).network_input)
    assert not np.array_equal(a.network_input, degrade_test_face(image, seed=5, index=10).network_input)
    assert a.network_input.shape == (3, 96, 96) and a.network_input.dtype == np.float32
    assert -1 <= a.network_input.min() and a.network_input.max() <= 1
    assert a.target.shape == a.degraded.shape == image.shape and a.target.dtype == a.degraded.dtype == np.uint8
    # degraded is the network input in 8 bit: x = u8 / 127.5 - 1 up to half a level.
    np.testing.assert_allclose(a.degraded.transpose(2, 0, 1) / 127.5 - 1, a.network_input, rtol=0, atol=1 / 255 + 1e-6)
    # Never flipped: the target is the file's face itself when the degradation keeps colour ...
    colour = [degrade_test_face(image, seed=4, index=i, degradation=DegradationConfig(gray_prob=0.0))
              for i in range(6)]
    assert all(np.array_equal(face.target, image) for face in colour)
    # ... and its luma when it turns the face gray (the LQ then gets the authors' colour noise on gray).
    gray = degrade_test_face(image, seed=4, index=0, degradation=DegradationConfig(gray_prob=1.0))
    luma = np.round(image.astype(np.float64) @ [0.299, 0.587, 0.114])
    np.testing.assert_allclose(gray.target[:, :, 0], luma, rtol=0, atol=1)
    assert (gray.target == gray.target[:, :, :1]).all()


def test_evaluation_faces_same_for_any_batch_size_and_workers(faces):
    from paddle.io import DataLoader

    ds = DegradedFaces(str(faces), 64, seed=7)
    reference = collect(DataLoader(ds, batch_size=1, num_workers=0))
    other = collect(DataLoader(ds, batch_size=4, num_workers=2))
    for key in ("input", "target", "sharp", "degraded"):
        np.testing.assert_array_equal(reference[key], other[key], err_msg=key)
    assert reference["index"].tolist() == list(range(6))
    # ... and equal to the test-time entry applied to each file at the model's size.
    sharp = cv2.resize(read_image(ds.faces.files[3]), (64, 64), interpolation=cv2.INTER_AREA)
    face = degrade_test_face(sharp, seed=7, index=3)
    np.testing.assert_array_equal(reference["input"][3], face.network_input)
    np.testing.assert_array_equal(reference["target"][3], face.target)
    assert ds.name(3) == "01000/00003"


def test_training_pairs_keyed_by_epoch_and_index(faces):
    ds = FaceDataset(str(faces), 64, seed=3)
    first = ds[(2, 4)]
    ds[(0, 1)], ds[(2, 5)]  # other items in between change nothing
    np.testing.assert_array_equal(first[0], FaceDataset(str(faces), 64, seed=3)[(2, 4)][0])
    np.testing.assert_array_equal(first[0], ds[(2, 4)][0])
    # Item (epoch 2, index 4) is the degradation drawn from the stream keyed (training, seed 3, 2, 4).
    hq = ds.load_hq(4).astype(np.float32) / 255
    params = ds.sampler.sample(hq.shape[:2], *keyed_rngs(TRAIN_STREAM, 3, 2, 4))
    lq, target = degrade(hq, params, ds.sampler.kernel_size)
    np.testing.assert_array_equal(first[0], lq.transpose(2, 0, 1) * np.float32(2) - np.float32(1))
    np.testing.assert_array_equal(first[1], target.transpose(2, 0, 1) * np.float32(2) - np.float32(1))
    assert not np.array_equal(first[0], ds[(3, 4)][0])
    assert not np.array_equal(first[0], FaceDataset(str(faces), 64, seed=4)[(2, 4)][0])
    loader = build_loader(ds, 3, num_workers=0, seed=3, rank=0, world_size=1)
    keys = [key for batch in loader.batch_sampler for key in batch]  # a first pass: epoch 0
    assert [k[0] for k in keys] == [0] * 6 and sorted(k[1] for k in keys) == list(range(6))
    epoch1 = collect(loader)
    # Another batch size, two workers, positioned at epoch 1: the same items, equally degraded.
    threaded = collect(build_loader(ds, 2, num_workers=2, seed=3, rank=0, world_size=1, start_epoch=1))
    np.testing.assert_array_equal(epoch1, threaded)
    assert not np.array_equal(collect(loader), epoch1)  # epoch 2 differs


def test_distributed_ranks_split_one_permutation(faces):
    ds = FaceDataset(str(faces), 32, mode="device")
    ranks = [FaceBatchSampler(ds, 2, num_replicas=2, rank=r, seed=9, drop_last=False) for r in range(2)]
    keys = [[k for batch in sampler for k in batch] for sampler in ranks]
    # 6 faces in global batches of 2·2: the second global batch wraps around to fill both ranks.
    assert len(keys[0]) == len(keys[1]) == 4
    assert set(k[1] for k in keys[0] + keys[1]) == set(range(6))
    next_epoch = [k for batch in ranks[0] for k in batch]
    assert {k[0] for k in next_epoch} == {1} and [k[1] for k in next_epoch] != [k[1] for k in keys[0]]


def test_ranks_take_contiguous_blocks_of_the_single_process_batches(faces):
    ds = FaceDataset(str(faces), 32, mode="device")
    single = [b for b in FaceBatchSampler(ds, 4, num_replicas=1, rank=0, seed=5)]
    ranks = [[b for b in FaceBatchSampler(ds, 2, num_replicas=2, rank=r, seed=5)] for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 1
    for step, batch in enumerate(single):
        assert batch == ranks[0][step] + ranks[1][step]


def test_skip_batches_resumes_mid_epoch(faces):
    ds = FaceDataset(str(faces), 32, mode="device")
    full = list(FaceBatchSampler(ds, 2, num_replicas=1, rank=0, seed=5))
    sampler = FaceBatchSampler(ds, 2, num_replicas=1, rank=0, seed=5)
    sampler.skip_batches = 2
    assert list(sampler) == full[2:]
    assert [k[0] for b in sampler for k in b] == [1] * 6  # the following pass is the next epoch, whole
