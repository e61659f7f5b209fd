"""The clean-output checker (tests/clean_output.py) catches each kind of noise on a handmade
notebook and passes a clean one; the package's live output (llmcourse.course.live_output) is clean
when unattended, checked in a real kernel."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import nbformat  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook, new_output  # noqa: E402

import clean_output  # noqa: E402
from llmcourse.course import live_output  # noqa: E402

TESTS = str(Path(__file__).resolve().parent)


def _png(width: int, height: int) -> str:
    """A valid 1-bit grey PNG of the given size, base64 as in a notebook."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + b"\x00" * ((width + 7) // 8) for _ in range(height))
    raw = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


def _image(width: int, height: int, kind: str = "display_data"):
    out = new_output(
        kind, data={"image/png": _png(width, height), "text/plain": "<Figure size 640x480>"}
    )
    if kind == "execute_result":
        out.execution_count = 1
    return out


def _nb(*outputs) -> nbformat.NotebookNode:
    return new_notebook(cells=[new_code_cell("x", outputs=list(outputs))])


def _stream(text: str, name: str = "stdout"):
    return new_output("stream", name=name, text=text)


def _result(text: str):
    return new_output("execute_result", data={"text/plain": text}, execution_count=1)


def test_png_size_reads_the_header():
    assert clean_output.png_size(base64.b64decode(_png(37, 5))) == (37, 5)
    with pytest.raises(ValueError, match="not a PNG"):
        clean_output.png_size(b"GIF89a" + b"\x00" * 30)


def test_a_clean_notebook_has_no_problems():
    nb = _nb(
        _stream("step 1 loss 2.0\n"),
        _stream("step 2 loss 1.5\n"),
        _stream("a warning\n", "stderr"),
        _image(640, 480),
        _result("{'loss': 1.5}"),
        _result("(0.5, 1.0)"),
    )
    nb.cells.append(new_code_cell("plt.plot(x);", outputs=[_image(900, 600)]))
    assert clean_output.problems(nb) == []


def test_a_frozen_widget_is_caught():
    widget = new_output(
        "display_data",
        data={
            clean_output.WIDGET: {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "fit:   0%|          | 0/300 [00:00<?, ?it/s]",
        },
    )
    found = clean_output.problems(_nb(widget), name="nb")
    assert len(found) == 1 and "nb cell 1" in found[0] and "widget" in found[0]
    assert "0/300" in found[0]


def test_text_printed_piece_by_piece_is_caught_and_whole_lines_are_not():
    pieces = [_stream(c) for c in "KING: hello"]
    found = clean_output.problems(_nb(*pieces))
    assert len(found) == 1 and "11 stdout pieces" in found[0]
    # as many as the cap allows pass; one piece more does not
    cap = clean_output.MAX_FRAGMENTS
    assert clean_output.problems(_nb(*[_stream("ab")] * cap, _stream("\n"))) == []
    assert len(clean_output.problems(_nb(*[_stream("ab")] * (cap + 1)))) == 1
    # a progress bar redrawn with \r on stderr is the same noise
    bar = [_stream(f"\r{i}/10", "stderr") for i in range(10)]
    assert "stderr" in clean_output.problems(_nb(*bar))[0]
    # pieces interrupted by an image start a new run
    split = [_stream("ab"), _stream("cd"), _image(10, 10), _stream("ef"), _stream("gh")]
    assert clean_output.problems(_nb(*split)) == []


@pytest.mark.parametrize(
    "text",
    [
        "Text(0.5, 1.0, 'Sequence length per character')",
        "<matplotlib.legend.Legend at 0x7f57a53d5dd0>",
        "[<matplotlib.lines.Line2D at 0x7f0>, <matplotlib.lines.Line2D at 0x7f1>]",
        "<Axes: title={'center': 'loss'}, xlabel='step', ylabel='loss'>",
        "<BarContainer object of 3 artists>",
        "(<Figure size 640x480 with 1 Axes>, <Axes: >)",
        "[Text(0, 0, 'a'), Text(1, 0, 'b')]",
    ],
)
def test_stray_matplotlib_reprs_are_caught(text):
    found = clean_output.problems(_nb(_image(640, 480), _result(text)))
    assert len(found) == 1 and "stray repr" in found[0]


def test_oversized_and_repeated_images_are_caught():
    found = clean_output.problems(_nb(_image(4191, 2970)))
    assert len(found) == 1 and "4191x2970" in found[0]
    assert clean_output.problems(_nb(_image(1900, 1400))) == []
    assert len(clean_output.problems(_nb(_image(100, 1600)))) == 1  # too tall alone
    twice = clean_output.problems(_nb(_image(300, 200, "execute_result"), _image(300, 200)))
    assert len(twice) == 1 and "twice" in twice[0]


def test_static_progress_prints_one_line(monkeypatch):
    monkeypatch.setenv(live_output.UNATTENDED_ENV, "1")
    assert live_output.unattended()
    out = io.StringIO()
    bar = live_output.StaticProgress(300, desc="fit", file=out)
    for _ in range(300):
        bar.update(1)
    bar.set_postfix(loss="1.2345", refresh=False)
    bar.close()
    bar.close()  # closing twice prints once
    line = out.getvalue()
    assert line.count("\n") == 1 and line.startswith("fit: 300 steps in ")
    assert line.rstrip().endswith("loss=1.2345")
    assert isinstance(live_output.progress(10, desc="fit"), live_output.StaticProgress)
    silent = io.StringIO()
    live_output.StaticProgress(5, disable=True, file=silent).close()
    assert silent.getvalue() == ""


def test_fit_prints_one_static_line_when_unattended(monkeypatch, capsys):
    import torch

    from llmcourse.runtime import detect
    from llmcourse.train import TrainConfig, fit

    model = torch.nn.Linear(3, 1)

    def sample(generator):
        x = torch.randn(4, 3, generator=generator)
        return (x,)

    class Regressor(torch.nn.Module):  # (x) -> (prediction, loss): the course's convention
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, x):
            pred = self.lin(x)
            return pred, (pred - x.sum(-1, keepdim=True)).pow(2).mean()

    monkeypatch.setenv(live_output.UNATTENDED_ENV, "1")
    cfg = TrainConfig(max_steps=5, warmup_steps=1, eval_every=0, log_every=1, precision="fp32")
    fit(Regressor(), sample, cfg, runtime=detect("cpu"))
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("fit:")]
    assert len(lines) == 1 and lines[0].startswith("fit: 5 steps in ") and "loss=" in lines[0]
    assert "it/s" not in captured.err  # no tqdm bar drawn
    fit(Regressor(), sample, cfg, runtime=detect("cpu"), progress=False)
    assert "fit:" not in capsys.readouterr().out


def test_progress_is_tqdm_when_someone_watches(monkeypatch):
    monkeypatch.setenv(live_output.UNATTENDED_ENV, "0")
    assert not live_output.unattended()
    bar = live_output.progress(3, desc="fit", disable=True)
    assert not isinstance(bar, live_output.StaticProgress) and hasattr(bar, "set_postfix")
    bar.close()


def test_text_stream_prints_plainly_outside_a_kernel(capsys):
    with live_output.TextStream("KING:\n") as out:
        for piece in ("to ", "be"):
            out.write(piece)
    assert capsys.readouterr().out == "KING:\nto be\n"
    assert out.text == "KING:\nto be"


def test_axes_without_labels_are_caught():
    fig, axes = plt.subplots(1, 3, sharey=True)
    axes[0].plot([1, 2], [3, 4])
    axes[0].set(title="loss", xlabel="step", ylabel="loss")
    axes[1].plot([1, 2], [3, 4])  # shares y with axes[0], which is labelled; x has no label
    axes[1].set_title("no x label")
    axes[2].bar(["full", "LoRA"], [1.0, 0.5])  # named ticks; the numeric y is shared and labelled
    assert clean_output.axes_problems(fig) == [
        "'no x label': no x label (ax.set_xlabel/set_ylabel)"
    ]
    fig2, ax = plt.subplots()
    ax.hist([0.1, 0.2, 0.2])
    ax.set_title("int8 error")
    assert clean_output.axes_problems(fig2) == [
        "'int8 error': no x or y label (ax.set_xlabel/set_ylabel)"
    ]
    fig2.supxlabel("error / bound")
    fig2.supylabel("weights")
    assert clean_output.axes_problems(fig2) == []
    fig3, ax = plt.subplots()
    ax.imshow([[0, 1], [1, 0]])
    ax.set_xticks([0, 1], labels=["a", "b"])
    ax.set_yticks([])
    ax.figure.colorbar(ax.images[0], ax=ax)  # a colour bar needs no label
    assert clean_output.axes_problems(fig3) == []
    ax.axis("off")  # a diagram
    assert clean_output.axes_problems(fig3) == []
    plt.close("all")


@pytest.mark.slow
def test_live_output_in_a_kernel_is_clean_when_unattended(monkeypatch):
    """A real kernel: fit's bar and a TextStream leave a static line and ONE growing output, where
    tqdm.auto and print(..., flush=True) leave the noise the checker reports."""
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv(live_output.UNATTENDED_ENV, "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    clean = """
import time
from llmcourse.course import live_output
bar = live_output.progress(4, desc="fit")
for _ in range(4):
    bar.update(1)
bar.set_postfix(loss="0.5")
bar.close()
with live_output.TextStream("KING:\\n", interval=0) as out:
    for piece in "to be or not":
        out.write(piece)
        time.sleep(0.01)
"""
    noisy = """
import time
from tqdm.auto import tqdm
for _ in tqdm(range(3)):
    pass
for piece in "to be or not":
    print(piece, end="", flush=True)
    time.sleep(0.01)
"""
    figure = """
import matplotlib.pyplot as plt
plt.plot([1, 2], [2, 1])
plt.title("unlabelled")
plt.show()
fig, ax = plt.subplots()
ax.plot([1, 2], [2, 1])
ax.set(xlabel="step", ylabel="loss", title="labelled");
"""
    nb = new_notebook(
        cells=[new_code_cell(clean_output.setup_code(TESTS))]
        + [new_code_cell(src) for src in (clean, noisy, figure, clean_output.REPORT)]
    )
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert clean_output.reported(nb.cells[4].outputs) == [
        "'unlabelled': no x or y label (ax.set_xlabel/set_ylabel)"
    ]
    assert [o.output_type for o in nb.cells[3].outputs] == ["display_data"] * 2  # both drawn
    nb.cells = nb.cells[1:4]
    first = nb.cells[0].outputs
    assert [o.output_type for o in first] == ["stream", "display_data"]
    assert first[0].text.startswith("fit: 4 steps in ") and "loss=0.5" in first[0].text
    assert first[1].data["text/plain"] == "KING:\nto be or not"
    found = clean_output.problems(nb, name="nb")
    assert found and all(p.startswith("nb cell 2") for p in found), found
    assert any("pieces" in p for p in found)
