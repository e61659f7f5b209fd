"""Hub resolution (Hugging Face, its mirrors, ModelScope): which id, subset, endpoint and URL each
setting picks. Offline by construction: nothing here downloads, and `modelscope` is not needed."""

import subprocess
import sys

import pytest

from llmcourse.data import fetch
from llmcourse.data.fetch import HubSource, NoModelScopeCopy, hub_source


@pytest.fixture(autouse=True)
def _default_hub(monkeypatch):
    for var in ("LLMCOURSE_HUB", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


def test_default_is_the_hugging_face_hub():
    src = hub_source("Salesforce/wikitext", subset="wikitext-2-raw-v1")
    assert src == HubSource(
        "huggingface",
        "dataset",
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        "https://huggingface.co",
    )
    assert src.url() == "https://huggingface.co/datasets/Salesforce/wikitext"
    assert (
        hub_source("gpt2", "model").url("config.json")
        == "https://huggingface.co/gpt2/resolve/main/config.json"
    )


def test_hf_endpoint_mirror_is_used_for_every_url(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com/")  # a trailing slash is dropped
    assert fetch.hf_endpoint() == "https://hf-mirror.com"
    src = hub_source("xmj2002/tang_poems")
    assert src.endpoint == "https://hf-mirror.com"
    assert (
        src.url("README.md", revision="abc")
        == "https://hf-mirror.com/datasets/xmj2002/tang_poems/resolve/abc/README.md"
    )
    assert (
        hub_source("HuggingFaceTB/SmolLM2-135M-Instruct", "model").url()
        == "https://hf-mirror.com/HuggingFaceTB/SmolLM2-135M-Instruct"
    )


@pytest.mark.parametrize(
    "kind, hf_id, ms_id",
    [
        ("dataset", "Salesforce/wikitext", "modelscope/wikitext"),
        ("dataset", "roneneldan/TinyStories", "AI-ModelScope/TinyStories"),
        ("dataset", "wikimedia/wikipedia", "AI-ModelScope/wikipedia"),
        ("model", "gpt2", "AI-ModelScope/gpt2"),  # a short legacy name
        ("model", "openai-community/gpt2", "AI-ModelScope/gpt2"),
        ("model", "bert-base-uncased", "AI-ModelScope/bert-base-uncased"),
        ("model", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ],
)
def test_modelscope_ids(monkeypatch, kind, hf_id, ms_id):
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")  # irrelevant on ModelScope
    src = hub_source(hf_id, kind, subset="s")
    assert (src.hub, src.repo_id, src.subset, src.endpoint) == (
        "modelscope",
        ms_id,
        "s",
        fetch.MODELSCOPE_ENDPOINT,
    )
    assert src.url("f.txt") == f"https://www.modelscope.cn/{kind}s/{ms_id}/resolve/master/f.txt"


def test_no_modelscope_copy_names_the_fix(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    with pytest.raises(NoModelScopeCopy) as err:
        hub_source("xmj2002/tang_poems")
    message = str(err.value)
    assert "'xmj2002/tang_poems'" in message and "LLMCOURSE_HUB=huggingface" in message
    assert "HF_ENDPOINT=https://hf-mirror.com" in message and "MODELSCOPE_IDS" in message
    assert "Salesforce/wikitext" in message  # what does have a copy
    with pytest.raises(NoModelScopeCopy, match="model 'tatsu-lab/alpaca'"):
        hub_source("tatsu-lab/alpaca", "model")  # kinds are separate tables
    assert (
        hub_source("xmj2002/tang_poems", hub="huggingface").hub == "huggingface"
    )  # an explicit hub wins
    with pytest.raises(ValueError, match="kind"):
        hub_source("gpt2", "space")


def test_resolution_needs_neither_network_nor_modelscope():
    code = (
        "import sys, os; os.environ['LLMCOURSE_HUB'] = 'modelscope'; from llmcourse.data import fetch; "
        "fetch.hub_source('gpt2', 'model'); fetch.hub_source('Salesforce/wikitext'); "
        "print(sorted({'modelscope', 'datasets', 'huggingface_hub', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_path_on_hugging_face_is_the_id(monkeypatch):
    """transformers downloads it itself (from HF_ENDPOINT); no network is touched here."""
    monkeypatch.setattr(fetch, "probe_host", lambda url: pytest.fail("must not touch the network"))
    assert fetch.hub_model_path("gpt2") == "gpt2"


def test_modelscope_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    monkeypatch.setattr(fetch, "probe_host", lambda url: None)
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails, as when not installed
    with pytest.raises(ImportError, match="pip install modelscope"):
        fetch.hub_model_path("gpt2")
    with pytest.raises(ImportError, match="pip install modelscope"):
        list(fetch.hub_rows("Salesforce/wikitext", "wikitext-2-raw-v1", "train"))


def test_hub_rows_dispatch_to_modelscope(monkeypatch):
    """A stand-in `modelscope` records what would be downloaded."""
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    probed, calls = [], []
    monkeypatch.setattr(fetch, "probe_host", probed.append)

    class MsDataset:
        @staticmethod
        def load(name, subset_name, split, use_streaming):
            calls.append((name, subset_name, split, use_streaming))
            return iter([{"text": "a"}, {"text": "b"}, {"text": "c"}])

    ms = type(sys)("modelscope")
    msdatasets = type(sys)("modelscope.msdatasets")
    msdatasets.MsDataset = MsDataset
    ms.snapshot_download = lambda repo_id: f"/cache/{repo_id}"
    monkeypatch.setitem(sys.modules, "modelscope", ms)
    monkeypatch.setitem(sys.modules, "modelscope.msdatasets", msdatasets)
    rows = list(fetch.hub_rows("Salesforce/wikitext", "wikitext-2-raw-v1", "train", max_rows=2))
    assert rows == [{"text": "a"}, {"text": "b"}]
    assert calls == [("modelscope/wikitext", "wikitext-2-raw-v1", "train", True)]
    assert probed == ["https://www.modelscope.cn"]
    assert fetch.hub_model_path("gpt2") == "/cache/AI-ModelScope/gpt2"


def test_endpoint_set_after_import_is_an_error(monkeypatch):
    constants = type(sys)("huggingface_hub.constants")
    constants.ENDPOINT = "https://huggingface.co"
    monkeypatch.setitem(sys.modules, "huggingface_hub.constants", constants)
    fetch.check_hf_endpoint()  # same endpoint: fine
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    with pytest.raises(RuntimeError, match="set HF_ENDPOINT first.*restart"):
        fetch.check_hf_endpoint()
