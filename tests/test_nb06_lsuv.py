"lsuv_init of exp.nb_06 with normalisation layers: no buffer changes, the right layer is scaled."
import pytest
import torch
from torch import nn

from exp import nb_06

pytestmark = pytest.mark.nb06


def gr(): return nb_06.GeneralRelu(0.1, 0.4)


def act_stats(model, xb):
    "Mean and std of every activation's output on `xb`, in training mode (as lsuv measures)."
    acts = [m for m in model.modules() if nb_06.is_activation(m)]
    outs = []
    model.train()
    with nb_06.Hooks(acts, lambda h, m, i, o: outs.append(torch.std_mean(o))), torch.no_grad():
        model(xb)
    return [(mean.item(), std.item()) for std, mean in outs]


def bn_cnn():
    "conv -> BatchNorm -> GeneralRelu blocks, the layout of 07."
    return nb_06.cnn_model(nfs=(1, 8, 16, 32), act=gr, norm=nn.BatchNorm2d)


@pytest.mark.parametrize('make', [bn_cnn, lambda: nb_06.cnn_model(nfs=(1, 8, 16), act=gr)],
                         ids=['conv-bn-act', 'conv-act'])
def test_lsuv_init_gives_unit_std_zero_mean_in_both_layouts(make):
    torch.manual_seed(0)
    model, xb = make(), torch.randn(64, 1, 28, 28)
    assert nb_06.lsuv_init(model, xb) is model
    for mean, std in act_stats(model, xb):
        assert abs(mean) < 1e-2 and abs(std - 1) < 1e-2, (mean, std)


def test_lsuv_init_scales_the_norm_not_the_conv_before_it():
    torch.manual_seed(0)
    model = bn_cnn()
    convs = [m[0].weight.clone() for m in model[:3]]
    nb_06.lsuv_init(model, torch.randn(64, 1, 28, 28))
    for c, block in zip(convs, model[:3]):
        torch.testing.assert_close(block[0].weight, c)        # the norm undoes any conv scale
        assert not torch.allclose(block[1].weight, torch.ones_like(block[1].weight))


def test_lsuv_init_leaves_every_buffer_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.BatchNorm1d(30), gr(), nn.Linear(30, 30),
                          nn.BatchNorm1d(30), nn.ReLU(), nn.Linear(30, 5))
    for m in model.modules():                  # running stats that are not the defaults
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(); m.running_var.uniform_(0.5, 2); m.num_batches_tracked += 7
    before = {k: b.clone() for k, b in model.named_buffers()}
    nb_06.lsuv_init(model, torch.randn(128, 20) * 3 + 1)
    after = dict(model.named_buffers())
    assert before.keys() == after.keys()
    for k in before: assert torch.equal(before[k], after[k]), k


def test_lsuv_init_leaves_every_buffer_of_a_bn_cnn_unchanged():
    torch.manual_seed(0)
    model = bn_cnn()
    before = {k: b.clone() for k, b in model.named_buffers()}
    nb_06.lsuv_init(model, torch.randn(64, 1, 28, 28))
    for k, b in model.named_buffers(): assert torch.equal(before[k], b), k


def test_lsuv_init_restores_each_modules_mode():
    torch.manual_seed(0)
    model = bn_cnn().eval()
    model[1].train()
    modes = [m.training for m in model.modules()]
    nb_06.lsuv_init(model, torch.randn(16, 1, 28, 28))
    assert [m.training for m in model.modules()] == modes


def test_lsuv_init_refuses_a_norm_without_a_scale_between_layer_and_activation():
    model = nb_06.cnn_model(nfs=(1, 8), act=gr, norm=lambda nf: nn.BatchNorm2d(nf, affine=False))
    with pytest.raises(ValueError, match='BatchNorm2d.*affine=True'):
        nb_06.lsuv_init(model, torch.randn(8, 1, 28, 28))
