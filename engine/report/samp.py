"""SAMP hand-off: broadcast a run's tables to a running SAMP hub, so that TOPCAT and Aladin load them.

SAMP (the IVOA Simple Application Messaging Protocol, version 1.3) through :mod:`pyvo.samp` (the
astropy project's SAMP package since pyvo 1.9: :mod:`astropy.samp` moved there and is deprecated since astropy 8.0,
with the same classes and behaviour): this
process registers with the hub as a client named ``xsift``, sends each table as a
``table.load.votable`` notification to every subscribed client (``url``: the file's ``file://`` URL,
``table-id``, ``name``) and unregisters. The hub is found as SAMP says: the ``SAMP_HUB`` environment
variable (``std-lockurl:file:///path/to/lockfile``) or the standard lockfile ``~/.samp``.

A table in another format than VOTable is first written as a VOTable copy (``<stem>.vot`` in a
``samp/`` folder beside it; units, descriptions and UCDs kept) so that the receivers can read it
while this process has ended. No hub running is not an error: :func:`broadcast_tables` returns the
one-line message to print instead.
"""
from __future__ import annotations

import os
import pathlib

__all__ = ["MTYPE", "votable_copy", "broadcast_tables"]

#: the SAMP message type sent for each table
MTYPE = "table.load.votable"


def votable_copy(path: str | os.PathLike) -> pathlib.Path:
    """``path`` itself when it is a VOTable (``.vot``/``.xml``), else a VOTable copy of it (a table file, or
    a folder of Parquet parts read as one table) written atomically as ``<folder>/samp/<stem>.vot``
    (:func:`xsift.data.io.write_table`) and returned."""
    path = pathlib.Path(path)
    if path.suffix.lower() in (".vot", ".xml", ".votable"):
        return path
    from xsift.data.io import read_catalog, write_table
    df = read_catalog(path)
    return write_table(df, path.parent / "samp" / f"{path.name.split('.')[0]}.vot", "votable")


def broadcast_tables(paths, *, client_name: str = "xsift") -> tuple[int, str]:
    """Send each table of ``paths`` to every client of the running SAMP hub as ``table.load.votable``.

    Returns (number of tables sent, one-line message for the user). With no hub running nothing is
    sent and the message says so (SAMP_HUB, or start TOPCAT/Aladin); not an exception."""
    import warnings
    from pyvo.samp import SAMPClientError, SAMPHubError, SAMPIntegratedClient, SAMPProxyError
    paths = [pathlib.Path(p) for p in paths]
    client = SAMPIntegratedClient(name=client_name, description="xsift: classified X-ray sources",
                                  callable=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # astropy warns before raising when it finds no hub
            client.connect()
    except (SAMPHubError, SAMPClientError, SAMPProxyError, OSError) as exc:
        where = os.environ.get("SAMP_HUB") or "~/.samp"
        return 0, (f"--samp: no SAMP hub running ({where}: {str(exc).splitlines()[0] if str(exc) else 'not found'}); "
                   "tables written but not sent: start TOPCAT or Aladin and rerun with --samp")
    sent = []
    try:
        for path in paths:
            vot = votable_copy(path).resolve()
            client.notify_all({"samp.mtype": MTYPE,
                               "samp.params": {"url": vot.as_uri(), "table-id": f"xsift:{vot.stem}",
                                               "name": f"xsift {vot.stem}"}})
            sent.append(vot.name)
    finally:
        client.disconnect()
    return len(sent), f"--samp: sent {', '.join(sent)} to the SAMP hub ({MTYPE})"
