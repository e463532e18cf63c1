"""`dlkernels compress`: a torch.save'd model in, the compressed file and the report out."""

import re

import pytest

torch = pytest.importorskip("torch")

from dlkernels.cli import main  # noqa: E402
from dlkernels.compress import load_compressed  # noqa: E402

from .conftest import mlp  # noqa: E402


def test_compress_command(tmp_path, run_python):
    model = mlp()
    torch.save(model, tmp_path / "model.pt")
    out = tmp_path / "model.fdlz"
    proc = run_python("-m", "dlkernels", "compress", str(tmp_path / "model.pt"), "--output", str(out),
                      "--amount", "0.9", "--bits", "4", "--report")
    assert proc.returncode == 0, proc.stderr
    assert "0.weight" in proc.stdout and "header, magic, CRC" in proc.stdout
    size = int(re.search(r"wrote .*: (\d+) bytes", proc.stdout).group(1))
    assert size == out.stat().st_size
    loaded = load_compressed(out)
    weights = [loaded[i].weight for i in (0, 2, 4)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == int(0.9 * sum(w.numel() for w in weights))
    assert all(torch.unique(w).numel() <= 16 for w in weights)


def test_refuses_state_dict_and_foreign_classes(tmp_path, capsys):
    torch.save(mlp().state_dict(), tmp_path / "sd.pt")
    assert main(["compress", str(tmp_path / "sd.pt"), "-o", str(tmp_path / "x.fdlz")]) == 1
    assert "not a torch.nn.Module" in capsys.readouterr().err

    torch.save(_Custom(), tmp_path / "custom.pt")
    assert main(["compress", str(tmp_path / "custom.pt"), "-o", str(tmp_path / "x.fdlz")]) == 1
    assert "--trust" in capsys.readouterr().err
    assert not (tmp_path / "x.fdlz").exists()


def test_bad_amount_and_bits(tmp_path, capsys):
    torch.save(mlp((4, 3, 2)), tmp_path / "m.pt")
    for flags, word in ((["--amount", "1.5"], "amount"), (["--bits", "17"], "bits")):
        assert main(["compress", str(tmp_path / "m.pt"), "-o", str(tmp_path / "x.fdlz"), *flags]) == 1
        assert word in capsys.readouterr().err
    assert not (tmp_path / "x.fdlz").exists()


class _Custom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(2, 2)


def test_output_into_a_directory_or_missing_folder(tmp_path, run_python):
    """Issue 13: these printed a traceback after all the work; now a one-line error, exit 2."""
    torch.save(mlp((4, 3, 2)), tmp_path / "m.pt")
    for out, words in ((tmp_path, "is a directory"),
                       (tmp_path / "missing" / "x.fdlz", "does not exist")):
        proc = run_python("-m", "dlkernels", "compress", str(tmp_path / "m.pt"), "-o", str(out))
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and str(out) in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "missing").exists()


def test_garbage_input_names_the_file(tmp_path, capsys):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(bytes(range(256)) * 4)
    assert main(["compress", str(bad), "-o", str(tmp_path / "x.fdlz")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    assert main(["compress", str(tmp_path / "absent.pt"), "-o", str(tmp_path / "x.fdlz")]) == 1
    assert "absent.pt" in capsys.readouterr().err
