"""The labs' 2D ConvNets: shapes and parameter counts, options, errors, a summary, learning."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.registry import build_model, count_parameters, first_conv
from pipeline.models.summary import model_summary

# Parameter counts worked out by hand, layer by layer (weights + biases), independent of the code.
# smallconv 1x28x28: conv 8*1*25+8 = 208, linear 8*14*14*10+10 = 15690.
# lenet 3x32x32: 456 + 2416 + (16*5*5*120+120) + (120*84+84) + (84*10+10) = 62006 (the CIFAR tutorial's net).
# conv3 1x28x28: 320 + 18496 + 36928 + (576*64+64) + 650 = 93322 (the RMSprop lab's count).
EXPECTED = {
    ("smallconv", (1, 28, 28)): (15898, ("conv1", (8, 1, 5, 5))),
    ("smallconv", (3, 32, 32)): (608 + 8 * 16 * 16 * 10 + 10, ("conv1", (8, 3, 5, 5))),
    ("lenet", (1, 28, 28)): (156 + 2416 + 256 * 120 + 120 + 10164 + 850, ("conv1", (6, 1, 5, 5))),
    ("lenet", (3, 32, 32)): (62006, ("conv1", (6, 3, 5, 5))),
    ("conv3", (1, 28, 28)): (93322, ("conv1", (32, 1, 3, 3))),
    ("conv3", (3, 32, 32)): (896 + 18496 + 36928 + 1024 * 64 + 64 + 650, ("conv1", (32, 3, 3, 3))),
    ("dropoutnet", (1, 28, 28)): (260 + 5020 + 320 * 50 + 50 + 510, ("conv1", (10, 1, 5, 5))),
    ("dropoutnet", (3, 32, 32)): (760 + 5020 + 500 * 50 + 50 + 510, ("conv1", (10, 3, 5, 5))),
}


@pytest.mark.parametrize("name,shape", list(EXPECTED))
def test_output_shape_and_parameter_count(name, shape):
    params, (_, conv_shape) = EXPECTED[(name, shape)]
    model = build_model(name, shape, 10, (), (), seed=0)
    assert model(torch.zeros(4, *shape)).shape == (4, 10)
    assert count_parameters(model) == params
    assert tuple(first_conv(model).weight.shape) == conv_shape


def test_rmsprop_lab_net_has_93322_parameters_on_mnist():
    model = build_model("conv3", (1, 28, 28), 10, (32, 64, 64), (3, 3, 3))
    assert count_parameters(model) == 93_322
    assert model.classifier.fc1.in_features == 576  # 64 * 3 * 3, from the conv arithmetic


def test_filters_and_kernels_are_parameters():
    model = build_model("lenet", (1, 28, 28), 10, (4, 9), (3,))  # one kernel size for every layer
    assert model.features.conv1.weight.shape == (4, 1, 3, 3)
    assert model.features.conv2.weight.shape == (9, 4, 3, 3)
    assert model.classifier.fc1.in_features == 9 * 5 * 5  # 28 -> 26 -> 13 -> 11 -> 5
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    same = build_model("lenet", (1, 8, 8), 10, (6, 16), (5, 5), padding="same")  # digits' 8x8 adaptation
    assert same.classifier.fc1.in_features == 16 * 2 * 2
    assert same(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_batch_norm_dropout_and_log_softmax_options():
    plain = build_model("lenet", (1, 28, 28), 10, (), ())
    bn = build_model("lenet", (1, 28, 28), 10, (), (), batch_norm=True, dropout=0.3)
    kinds = [type(m) for m in bn.modules()]
    assert kinds.count(nn.BatchNorm2d) == 2 and nn.Dropout2d in kinds and kinds.count(nn.Dropout) == 2
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)) for m in plain.modules())
    assert count_parameters(bn) == count_parameters(plain) + 2 * (6 + 16)  # BN's scale and shift
    lab = build_model("dropoutnet", (1, 28, 28), 10, (), (), log_softmax=True)  # the lab: dropout 0.5 by default
    assert lab.features.drop2.p == 0.5 and lab.classifier.fc1_drop.p == 0.5
    out = lab.eval()(torch.rand(3, 1, 28, 28))
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(3), atol=1e-5)  # log-probabilities


def test_same_seed_same_weights():
    a = build_model("conv3", (1, 28, 28), 10, (), (), seed=7)
    b = build_model("conv3", (1, 28, 28), 10, (), (), seed=7)
    c = build_model("conv3", (1, 28, 28), 10, (), (), seed=8)
    assert torch.equal(first_conv(a).weight, first_conv(b).weight)
    assert not torch.equal(first_conv(a).weight, first_conv(c).weight)


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="kernel 5x5 of conv2 is too large for its 2x2 input feature map"):
        build_model("lenet", (1, 8, 8), 10, (6, 16), (5, 5), padding="valid")
    with pytest.raises(ConfigError, match="lenet has 2 conv layers: give 2 filter counts"):
        build_model("lenet", (1, 28, 28), 10, (8,), (5,))
    with pytest.raises(ConfigError, match="needs images"):
        build_model("lenet", (1, 20), 10, (), ())
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        build_model("resnet", (1, 28, 28), 10, (), ())


def test_model_summary_lists_layers_shapes_and_parameters():
    model = build_model("conv3", (1, 28, 28), 10, (), ())
    text = model_summary(model, (1, 28, 28))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "parameters"]
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert rows["features.conv3"][1:] == ["Conv2d", "64x3x3", "36928"]
    assert rows["flatten"][2] == "576"
    assert sum(int(r[-1]) for r in rows.values()) == count_parameters(model) == 93_322
    assert lines[-1] == "total parameters: 93,322"


@pytest.mark.parametrize("name", ["smallconv", "lenet", "conv3", "dropoutnet"])
def test_each_model_overfits_one_batch(name):
    torch.manual_seed(0)
    X, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    model = build_model(name, (1, 28, 28), 10, (), (), seed=0, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model(X).argmax(1) == y).all()
