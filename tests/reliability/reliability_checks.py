"""The check every refusal of the reliability tests must pass (a module of its own: ``conftest`` is not a
unique module name across the test folders)."""


def refused(code: int, err: str, *names: str) -> str:
    """The one line of ``err`` after asserting exit status 2, no traceback and that it names ``names``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]
