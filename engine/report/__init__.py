"""What a run leaves for people: the manifest (:mod:`xsift.report.manifest`) and figures (:mod:`xsift.report.figures`)."""
from xsift.report.manifest import file_hash, machine, package_versions, write_manifest  # noqa: F401
