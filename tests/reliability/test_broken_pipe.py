"""Output piped into a reader that stops early (``xsift presets | head -1``) ends quietly: no
BrokenPipeError traceback and no 'Exception ignored' message at exit."""
import shutil
import subprocess
import sys


def test_reader_closing_the_pipe_first_gives_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "xsift.cli", "presets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                     # the reader is gone before the command writes a byte
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert err == "", err
    assert code == 141


def test_presets_into_head():
    assert shutil.which("head")
    xsift = [sys.executable, "-m", "xsift.cli"]
    full = subprocess.run(xsift + ["presets"], capture_output=True, text=True, check=True).stdout
    shell = subprocess.run(f"'{sys.executable}' -m xsift.cli presets | head -1", shell=True,
                           capture_output=True, text=True, timeout=120)
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr, shell.stderr
    assert shell.stdout == full.splitlines(keepends=True)[0]
