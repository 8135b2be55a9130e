import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def toy_policy():
    """(model, processor) of the packaged toy policy, fp32 on CPU."""
    from rethinker.toyworld.model import load_toy

    model, processor = load_toy("cpu")
    return model, processor


@pytest.fixture(scope="session")
def toy_records():
    from rethinker.toyworld.puzzles import generate

    return generate(16, seed=123, split="test")
