"""utils/image_io.py: every odd format becomes RGB uint8, gray pictures are reported for one notice, and a
broken file is one UserError with nothing of OpenCV's own logging beside it."""
import cv2
import numpy as np
import pytest

from utils.errors import UserError
from utils.image_io import gray_notice, read_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    colour = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    paths = {}

    def save(name, pixels):
        paths[name] = folder / name
        assert cv2.imwrite(str(paths[name]), pixels)

    save("gray.png", gray)
    save("gray.jpg", gray)
    save("gray16.png", gray.astype(np.uint16) * 257)
    save("gray_as_bgr.png", np.dstack([gray] * 3))
    save("colour.png", colour)
    save("colour.jpg", colour)
    ok, encoded = cv2.imencode(".png", colour)
    paths["truncated.png"] = folder / "truncated.png"
    paths["truncated.png"].write_bytes(encoded.tobytes()[: encoded.size // 2])
    paths["garbage.png"] = folder / "garbage.png"
    paths["garbage.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 40)
    return paths, gray, colour


def test_gray_files_and_gray_pictures_are_collected_and_become_rgb(files):
    paths, gray, colour = files
    found = []
    for name in ("gray.png", "gray.jpg", "gray16.png", "gray_as_bgr.png", "colour.png", "colour.jpg"):
        image = read_image(str(paths[name]), gray_paths=found)
        assert image.dtype == np.uint8 and image.shape == (24, 32, 3), name
    assert found == [str(paths[n]) for n in ("gray.png", "gray.jpg", "gray16.png", "gray_as_bgr.png")]
    np.testing.assert_array_equal(read_image(str(paths["gray.png"])), np.dstack([gray] * 3))
    np.testing.assert_array_equal(read_image(str(paths["colour.png"])), colour[:, :, ::-1])  # BGR file -> RGB


def test_the_gray_notice_is_one_line_naming_the_first_file(files):
    paths, _, _ = files
    assert gray_notice([]) == ""
    one = gray_notice([str(paths["gray.png"])])
    many = gray_notice([str(paths["gray.png"]), str(paths["gray.jpg"])])
    for line in (one, many):
        assert "\n" not in line and "grayscale image" in line and str(paths["gray.png"]) in line
    assert many.startswith("2 grayscale images")


@pytest.mark.parametrize("name", ["truncated.png", "garbage.png"])
def test_a_broken_file_is_one_error_without_opencv_warnings(files, name, capfd):
    paths, _, _ = files
    with pytest.raises(UserError, match="not a readable image"):
        read_image(str(paths[name]))
    out, err = capfd.readouterr()  # OpenCV writes to the file descriptors, not sys.stderr
    assert "WARN" not in err and "ERROR" not in err and out == ""
    assert cv2.utils.logging.getLogLevel() != cv2.utils.logging.LOG_LEVEL_SILENT  # restored afterwards
