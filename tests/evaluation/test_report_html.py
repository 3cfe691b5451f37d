"""report.html (unet_jax.report_html): content, order, structure, and a real browser.

Oracles: per-image IoU from boolean masks in numpy (mean over the classes present in the
label or the prediction), per-class scores from a hand-made confusion matrix by their
formulas, thumbnails from the labels by hand (PIL nearest picks every second pixel's
centre), predictions of the tiny run by ``model.apply`` (test_eval's reference), and
headless Chromium for "it opens and shows everything".
"""

import base64
import html.parser
import io
import math
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.evaluation.test_eval import _reference_predictions, tiny_run
from tests.fake_data import make_examples
from unet_jax.data.classes import IGNORE_LABEL, ClassSet
from unet_jax.evaluation import evaluate, metrics, report_html
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import load_run

VOID = {"meta", "img", "br", "hr", "input", "link"}


class PageParser(html.parser.HTMLParser):
    """Checks that every element is closed in order; collects what the tests look at."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.image_rows: list[dict] = []  # id, data-iou, imgs, text
        self.class_rows: list[list[str]] = []
        self.confusion_titles: list[str] = []
        self.data_uris: list[str] = []
        self._cell: list[str] | None = None
        self._in_class_row = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        css = attrs.get("class") or ""
        if tag == "tr" and css == "image-row":
            self.image_rows.append({"id": attrs["id"], "iou": attrs["data-iou"], "imgs": []})
        if tag == "tr" and css == "class-row":
            self._in_class_row = True
            self.class_rows.append([])
        if tag == "td" and self._in_class_row:
            self._cell = []
        if tag == "td" and "title" in attrs and ("cell" in css or "empty" in css):
            self.confusion_titles.append(attrs["title"])
        if tag == "img":
            self.data_uris.append(attrs["src"])
            if self.image_rows:
                self.image_rows[-1]["imgs"].append(attrs["src"])
        if tag in ("script", "link", "iframe"):
            self.errors.append(f"external or active content: <{tag}>")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "td" and self._cell is not None:
            self.class_rows[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._in_class_row = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert not parser.errors, parser.errors
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return parser


def decode_png(uri: str, kind: str = "png") -> np.ndarray:
    prefix = f"data:image/{kind};base64,"
    assert uri.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))) as picture:
        assert picture.format == kind.upper()
        return np.asarray(picture.convert("RGB"))


def image_iou(label: np.ndarray, prediction: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in the label or the prediction (ignored excluded)."""
    valid = (label != IGNORE_LABEL) & (label < num_classes)
    ious = []
    for c in range(num_classes):
        true, pred = (label == c) & valid, (prediction == c) & valid
        union = (true | pred).sum()
        if union:
            ious.append((true & pred).sum() / union)
    return float(np.mean(ious)) if ious else math.nan


# ----------------------------------------------------------------------------
# The page, from hand-made inputs.
# ----------------------------------------------------------------------------


def test_page_lists_every_image_worst_first_with_its_iou_and_the_class_table():
    classes = ClassSet.from_names(
        ["road", "car & <truck>", "sky"], [(128, 64, 128), (0, 0, 142), (70, 130, 180)]
    )
    rng = np.random.default_rng(0)
    h, w = 6, 8
    labels, predictions = [], []
    perfect = rng.integers(0, 3, (h, w)).astype(np.uint8)
    labels.append(perfect), predictions.append(perfect.copy())  # IoU 1
    half = np.zeros((h, w), np.uint8)
    half[:, 4:] = 1
    labels.append(half), predictions.append(np.zeros((h, w), np.uint8))  # road 0.5, car 0
    noisy = rng.integers(0, 3, (h, w)).astype(np.uint8)
    labels.append(noisy), predictions.append(rng.integers(0, 3, (h, w)).astype(np.uint8))
    ignored = np.full((h, w), IGNORE_LABEL, np.uint8)
    labels.append(ignored), predictions.append(np.ones((h, w), np.uint8))  # nothing scored
    names = ["perfect.png", "half <&> half.png", "noisy.png", "all ignored.png"]
    rows = report_html.ImageRows(classes, width=4)  # 8 px wide images: 4 px thumbnails
    for label, prediction, name in zip(labels, predictions, names, strict=True):
        rows.add(
            image=rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
            label=label[..., None],
            prediction=prediction,
            name=name,
            confusion=metrics.confusion_counts(prediction[None], label[None], num_classes=3),
        )
    expected = [image_iou(lab, pred, 3) for lab, pred in zip(labels, predictions, strict=True)]
    assert expected[1] == pytest.approx(0.25) and expected[0] == 1.0 and math.isnan(expected[3])

    cm = np.array([[50, 3, 2], [4, 20, 1], [0, 0, 0]], np.int64)  # no sky in the truth
    results = metrics.to_jsonable(
        {
            **metrics.segmentation_metrics(cm, classes.names),
            "confusion_matrix": cm,
            "num_examples": 4,
            "dataset": "hand/made",
            "resolution": "6x8",
        }
    )
    report = {
        "workdir": "runs/x",
        "split": "test",
        "checkpoint": {"requested": "best", "step": 7},
        "options": {"tta_flip": False, "onnx": None},
        "time": "2026-12-01T22:00:00+00:00",
        **results,
    }
    page = report_html.render(report=report, results=results, title="6x8", rows=rows)
    parsed = parse(page)

    # Every image, worst first, with its IoU; the unscored one last.
    order = sorted(range(4), key=lambda i: (math.isnan(expected[i]), expected[i]))
    assert [r["id"] for r in parsed.image_rows] == [f"image-{i}" for i in order]
    for row, i in zip(parsed.image_rows, order, strict=True):
        assert row["iou"] == ("n/a" if math.isnan(expected[i]) else f"{expected[i]:.4f}")
        assert len(row["imgs"]) == 3
        truth, prediction = decode_png(row["imgs"][1]), decode_png(row["imgs"][2])
        assert decode_png(row["imgs"][0], "jpeg").shape == (3, 4, 3)
        np.testing.assert_array_equal(truth, classes.colorize(labels[i][1::2, 1::2]))
        np.testing.assert_array_equal(prediction, classes.colorize(predictions[i][1::2, 1::2]))
    assert "half &lt;&amp;&gt; half.png" in page and "car &amp; &lt;truck&gt;" in page
    assert "<truck>" not in page

    # The class table: the formulas on the hand-made matrix.
    road_iou, car_iou = 50 / (55 + 54 - 50), 20 / (25 + 23 - 20)
    assert parsed.class_rows == [
        ["road", f"{road_iou:.4f}", f"{100 / 109:.4f}", f"{50 / 54:.4f}", f"{50 / 55:.4f}", "55"],
        ["car & <truck>", f"{car_iou:.4f}", f"{40 / 48:.4f}", f"{20 / 23:.4f}", "0.8000", "25"],
        ["sky", "0.0000", "0.0000", "0.0000", "n/a", "0"],
    ]
    # The confusion matrix: one cell per pair, counts and row shares in the tooltips.
    assert len(parsed.confusion_titles) == 9
    assert "truth road, predicted car &amp; &lt;truck&gt;: 3 pixels (5.45% of the road" in page
    assert parsed.confusion_titles[3].startswith("truth car & <truck>, predicted road: 4 pixels")
    assert parsed.confusion_titles[6:] == ["truth sky: no pixels"] * 3
    assert f"{road_iou:.4f}" in page and "0.6143" not in page


# ----------------------------------------------------------------------------
# End to end: eval of the tiny run, then a real browser.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The tiny run's test split, and at full resolution 3 images of 34x45 (test_eval's)."""
    tiny = tiny_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("report")
    report = evaluate.run_evaluation(
        tiny.workdir,
        evaluate.EvalOptions(
            split="test",
            checkpoint="latest",
            num_gallery=2,
            full_resolution=True,
            scale="native",
            progress=False,
        ),
        sources=tiny.sources,
        full_sources={"test": make_examples(3, size=(34, 45), seed=7)},
        out_dir=out,
    )
    return tiny, report, out


def test_eval_writes_the_report_with_every_image_and_its_iou(evaluated):
    tiny, report, out = evaluated
    assert str(out / "report.html") in report["files"]
    examples = tiny.sources["test"]
    run = load_run(tiny.workdir, checkpoint="latest")
    images = np.stack([x["image"] for x in examples])
    labels = np.stack([x["label"][..., 0] for x in examples])
    predictions = _reference_predictions(run, images)
    expected = [image_iou(lab, p, 13) for lab, p in zip(labels, predictions, strict=True)]
    parsed = parse((out / "report.html").read_text())
    classes = read_run_classes(tiny.workdir)
    order = np.argsort(expected, kind="stable")
    assert [r["id"] for r in parsed.image_rows] == [f"image-{i}" for i in order]
    for row, i in zip(parsed.image_rows, order, strict=True):
        assert float(row["iou"]) == pytest.approx(expected[i], abs=1e-4)
        truth = decode_png(row["imgs"][1])  # 32 px wide: kept at full size
        np.testing.assert_array_equal(truth, classes.colorize(labels[i]))
    assert [r[0] for r in parsed.class_rows] == report["class_names"]
    assert [r[1] for r in parsed.class_rows] == [
        "n/a" if s["iou"] is None else f"{s['iou']:.4f}" for s in report["per_class"].values()
    ]
    assert report["files"][2:4] == [str(out / "report.html"), str(out / "report_full.html")]
    assert len(parse((out / "report_full.html").read_text()).image_rows) == 3


def test_wide_images_are_downscaled_to_the_thumbnail_width():
    classes = ClassSet.numbered(3)
    rows = report_html.ImageRows(classes)
    label = np.zeros((40, 500), np.uint8)
    label[:, 250:] = 2
    rows.add(
        image=np.full((40, 500, 3), 90, np.uint8),
        label=label,
        prediction=label,
        name="wide",
        confusion=metrics.confusion_counts(label[None], label[None], num_classes=3),
    )
    uris = [report_html._data_uri(p) for p in rows.rows[0].pictures]
    image, truth = decode_png(uris[0], "jpeg"), decode_png(uris[1])
    assert image.shape == truth.shape == (31, report_html.THUMBNAIL_WIDTH, 3)  # 40 * 384 / 500
    np.testing.assert_allclose(image, 90, atol=2)  # JPEG
    np.testing.assert_array_equal(truth[:, :192], classes.colorize(np.zeros((31, 192), int)))
    np.testing.assert_array_equal(truth[:, 192:], classes.colorize(np.full((31, 192), 2)))


def test_no_pictures_no_page(tmp_path, tmp_path_factory):
    tiny = tiny_run(tmp_path_factory)
    report = evaluate.run_evaluation(
        tiny.workdir,
        evaluate.EvalOptions(split="test", checkpoint="latest", pictures=False, progress=False),
        sources=tiny.sources,
        out_dir=tmp_path,
    )
    assert not (tmp_path / "report.html").exists()
    assert all(not f.endswith(".html") for f in report["files"])


def test_onnx_evaluation_writes_the_report(tmp_path, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from unet_jax.deploy import export

    tiny = tiny_run(tmp_path_factory)
    model = tmp_path / "tiny.onnx"
    args = ["--workdir", str(tiny.workdir), "--format", "onnx", "--out", str(model)]
    assert export.main(args) == 0
    report = evaluate.run_evaluation(
        tiny.workdir,
        evaluate.EvalOptions(split="test", onnx=str(model), onnx_threads=1, progress=False),
        sources=tiny.sources,
        out_dir=tmp_path / "eval",
    )
    page = (tmp_path / "eval" / "report.html").read_text()
    assert len(parse(page).image_rows) == 5 and f"ONNX model {model}" in page
    assert report["files"][2] == str(tmp_path / "eval" / "report.html")


# ----------------------------------------------------------------------------
# Headless Chromium.
# ----------------------------------------------------------------------------

# Appended to a copy of the page (the report itself has no script): after loading, it
# records how many pictures the browser decoded and any script error.
PROBE = """<script>
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message)); }, true);
window.addEventListener("load", function () {
  var all = Array.prototype.slice.call(document.images);
  var ok = all.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-probe", ok.length + "/" + all.length);
  document.body.setAttribute("data-errors", errors.join("|"));
});
</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def _run_chromium(binary: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless",
        "--no-sandbox",  # root in containers
        "--disable-gpu",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_report_opens_in_headless_chromium(evaluated, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    tiny, report, out = evaluated
    page = (out / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    shot = tmp_path / "report.png"
    dom = _run_chromium(
        binary,
        tmp_path,
        "--dump-dom",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        "--hide-scrollbars",
        probe.as_uri(),
    ).stdout
    images = 3 * report["num_examples"]
    assert f'data-probe="{images}/{images}"' in dom, dom[:500]  # every picture decoded
    assert 'data-errors=""' in dom
    assert dom.count('class="image-row"') == report["num_examples"]
    assert dom.count('class="class-row"') == len(report["class_names"])
    assert "Every image, worst first" in dom and "Confusion matrix" in dom
    with Image.open(shot) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.shape == (2400, 1280, 3)
    packed = pixels.astype(np.int32) @ np.array([65536, 256, 1], np.int32)  # one int per colour
    colours, counts = np.unique(packed, return_counts=True)
    assert len(colours) > 500, len(colours)  # text, tables and photos, not a blank page
    # The thumbnails are drawn: a class colour covers far more than its swatches (about
    # 600 pixels) would.
    label = tiny.sources["test"][0]["label"][..., 0]
    truth = read_run_classes(tiny.workdir).colorize(label).astype(np.int32)
    on_screen = dict(zip(colours.tolist(), counts.tolist(), strict=True))
    classes_drawn = [on_screen.get(int(c), 0) for c in np.unique(truth @ [65536, 256, 1])]
    assert max(classes_drawn) > 5000, classes_drawn
