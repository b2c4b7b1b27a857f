"""Errors a user can act on."""


class XsiftError(Exception):
    """A problem with the user's input or options, said in one actionable message.

    The message names the file, the column and what was expected. The CLI prints
    it without a traceback and exits with status 2.
    """


class SchemaError(XsiftError):
    """A catalogue does not have what the chosen preset needs."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at its iteration limit before converging. xsift's estimators emit
    scikit-learn's ``sklearn.exceptions.ConvergenceWarning`` instead when scikit-learn is installed."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``. xsift's estimators raise
    scikit-learn's ``sklearn.exceptions.NotFittedError`` instead when scikit-learn is installed."""
