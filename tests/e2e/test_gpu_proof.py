"""``benchmarks/gpu_proof.py --cpu-smoke``: the GPU proof's code runs end to end on a CPU
(the steps that need no full-size model), so a GPU session spends its minutes measuring.
The index_throughput step (a ViT-B/32 on the CPU, ~70 s) is left to a manual smoke run."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_proof

pytestmark = pytest.mark.slow  # runs the GPU proof's whole script


def test_the_gpu_proof_runs_on_a_cpu(tmp_path, capsys):
    out = tmp_path / "out"
    rc = gpu_proof.main([
        "--cpu-smoke", "--out", str(out), "--models", str(tmp_path / "models"),
        "--photo-cache", str(tmp_path / "photos"), "--steps", "parity,onnxruntime,oom,faiss,decode",
    ])
    report = json.loads((out / "gpu_proof.json").read_text())
    steps = report["steps"]
    assert rc == 0, {n: s.get("error") for n, s in steps.items()}
    assert report["mode"] == "cpu-smoke" and set(steps) == {
        "parity", "onnxruntime", "oom", "faiss", "decode"}
    assert all(s["status"] == "ok" for s in steps.values())
    assert steps["oom"]["encode"]["handled"] and steps["oom"]["single"]["handled"]
    assert steps["oom"]["load"] == {"status": "skipped", "reason": "needs CUDA"}
    assert steps["faiss"]["gpu"]["status"] == "skipped"  # faiss-cpu here
    assert steps["decode"]["nvjpeg"]["reason"] == "needs CUDA"
    assert steps["parity"]["min_image_cosine"] > 0.99
    ort_step = steps["onnxruntime"]  # the CPU provider stands in for CUDA's
    assert ort_step["provider"] == "CPUExecutionProvider"
    assert ort_step["min_cosine_to_torch_fp32"] >= 0.999
    assert set(ort_step["images_per_s"]) == {"onnxruntime fp32", "torch fp32"}
    assert "# GPU proof (cpu-smoke" in (out / "gpu_proof.md").read_text()
    capsys.readouterr()
