"""Distiller: teacher frozen, accumulation, checkpoints, callbacks, torchrun, digits."""

import copy
import inspect
import textwrap

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dlkernels.distill import Distiller, TemperatureSchedule, distillation_loss  # noqa: E402


def models(seed=0):
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4))
    student = nn.Sequential(nn.Linear(6, 4))
    return teacher, student


def data(n_batches=6, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 6, generator=g), torch.randint(0, 4, (size,), generator=g))
            for _ in range(n_batches)]


def test_teacher_frozen_and_student_learns():
    teacher, student = models()
    before = copy.deepcopy(teacher.state_dict())
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    d = Distiller(teacher, student, opt, schedule=2.0, alpha=1.0)
    batches = data()

    def total():
        with torch.no_grad():
            return sum(float(distillation_loss(student(x), teacher.eval()(x), temperature=2.0))
                       for x, _ in batches)

    start = total()
    d.fit(batches, epochs=10)
    end = total()
    assert end < 0.5 * start
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    assert not teacher.training  # eval mode: dropout off, so the targets were deterministic
    assert all(p.grad is None for p in teacher.parameters())
    assert 0 <= d.evaluate(batches)["accuracy"] <= 1


def test_accumulation_equals_big_batch():
    batches = data(4, 8)
    big = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
           for a, b in zip(batches[::2], batches[1::2])]
    results = []
    for accumulate, stream in ((2, batches), (1, big)):
        teacher, student = models(1)
        d = Distiller(teacher, student, torch.optim.SGD(student.parameters(), lr=0.3),
                      accumulation_steps=accumulate)
        d.fit(stream)
        results.append((d.step, [p.detach().clone() for p in student.parameters()]))
    assert results[0][0] == results[1][0] == 2
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    batches = data(4)
    sched = TemperatureSchedule(6.0, end=1.0, total=8, kind="cosine")

    def fresh():
        teacher, student = models(2)
        return Distiller(teacher, student, torch.optim.Adam(student.parameters(), lr=0.05),
                         schedule=sched)

    straight = fresh()
    straight.fit(batches, epochs=2)
    first = fresh()
    first.fit(batches, epochs=1)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = fresh()
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert (resumed.step, resumed.epoch) == (4, 1)
    resumed.fit(batches, epochs=1)
    for a, b in zip(straight.student.parameters(), resumed.student.parameters()):
        torch.testing.assert_close(a, b)


def test_callbacks_schedule_and_history():
    seen = []
    teacher, student = models()
    sched = TemperatureSchedule(4.0, end=1.0, total=2, kind="linear", per="epoch")
    d = Distiller(teacher, student, torch.optim.SGD(student.parameters(), lr=0.1), schedule=sched,
                  callbacks=[lambda dist, m: seen.append(m)])
    history = d.fit(data(3), epochs=3)
    assert [m["step"] for m in seen] == list(range(9)) and history == seen
    assert [m["temperature"] for m in seen[::3]] == [4.0, 2.5, 1.0]
    assert all(m["loss"] > 0 for m in seen)


def test_amp_cpu_and_unlabelled_batches():
    teacher, student = models()
    d = Distiller(teacher, student, torch.optim.SGD(student.parameters(), lr=0.1), amp=True)
    d.fit([x for x, _ in data(2)])
    assert d.step == 2


def test_options_are_keyword_only():
    kinds = {n: p.kind for n, p in inspect.signature(Distiller).parameters.items()}
    assert [n for n, k in kinds.items() if k is inspect.Parameter.POSITIONAL_OR_KEYWORD] == [
        "teacher", "student", "optimizer"]
    kinds = {n: p.kind for n, p in inspect.signature(Distiller.fit).parameters.items()}
    assert [n for n, k in kinds.items() if k is inspect.Parameter.POSITIONAL_OR_KEYWORD] == [
        "self", "batches"]


def test_bad_arguments():
    teacher, student = models()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        Distiller(teacher, student, opt, schedule=0.0)
    with pytest.raises(ValueError, match="accumulation_steps must be >= 1"):
        Distiller(teacher, student, opt, accumulation_steps=0)
    with pytest.raises(ValueError, match="alpha"):
        Distiller(teacher, student, opt, alpha=2)
    with pytest.raises(TypeError, match="optimizer"):
        Distiller(teacher, student, None)
    d = Distiller(teacher, student, opt)
    with pytest.raises(IndexError, match="target must lie in"):
        d.train_step((torch.randn(2, 6), torch.tensor([0, 9])))
    with pytest.raises(ValueError, match="input must be finite"):
        d.train_step((torch.full((2, 6), float("nan")), torch.tensor([0, 1])))


DDP_SCRIPT = textwrap.dedent('''
    import torch, torch.distributed as dist
    from torch import nn
    from dlkernels.distill import Distiller

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    teacher = nn.Linear(6, 4)
    student = nn.Linear(6, 4)
    d = Distiller(teacher, student, torch.optim.SGD(student.parameters(), lr=0.5),
                  accumulation_steps=2)
    assert isinstance(d.model, nn.parallel.DistributedDataParallel)
    g = torch.Generator().manual_seed(100 + rank)      # each rank its own shard
    batches = [(torch.randn(8, 6, generator=g), torch.randint(0, 4, (8,), generator=g))
               for _ in range(4)]
    d.fit(batches, epochs=2)
    flat = torch.cat([p.detach().reshape(-1) for p in student.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    assert all(torch.equal(gathered[0], x) for x in gathered), "ranks diverged"
    moved = not torch.equal(flat, torch.cat([p.reshape(-1) for p in nn.Linear(6, 4).parameters()]))
    print(f"rank {rank} ok steps={d.step} moved={moved}")
    dist.destroy_process_group()
''')


@pytest.mark.slow
def test_torchrun_two_cpu_processes(run_python, tmp_path):
    script = tmp_path / "ddp_distill.py"
    script.write_text(DDP_SCRIPT)
    proc = run_python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                      str(script), env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rank 0 ok steps=4" in proc.stdout and "rank 1 ok steps=4" in proc.stdout
