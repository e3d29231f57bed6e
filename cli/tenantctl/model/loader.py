"""Read a clients file (HCL ``.tfvars`` or ``.tfvars.json``) into the validated model."""

from __future__ import annotations

from pathlib import Path

from tenantctl.errors import Diagnostic, InputError, Location, ValidationFailed
from tenantctl.model.hcl import HclSyntaxError, SourceFile, is_json_path, parse_hcl, parse_json
from tenantctl.model.types import Model
from tenantctl.model.validate import build_model

DEFAULT_CLIENTS_FILE = "clients.tfvars"


def model_from_text(text: str, filename: str = DEFAULT_CLIENTS_FILE) -> Model:
    """Parse and validate clients-file text. Raises ``ValidationFailed`` listing every problem."""
    source = SourceFile(filename, text)
    try:
        root = parse_json(text) if is_json_path(filename) else parse_hcl(text)
    except HclSyntaxError as error:
        raise ValidationFailed([Diagnostic(source.location(error.pos), "", error.message)]) from None
    return build_model(root, source)


def load_model(path: str | Path) -> Model:
    """Read and validate the clients file at ``path``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"clients file not found: {path}",
                         hint="pass the path, e.g. `tenantctl validate clients.tfvars`, or create "
                              "clients.tfvars (see clients.tfvars.example)") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a clients file") from None
    except OSError as error:
        raise InputError(f"cannot read clients file {path}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationFailed([Diagnostic(Location(str(path), 1, 1), "",
                                           f"not UTF-8 text (byte {error.start})")]) from None
    return model_from_text(text, str(path))


def resolve_clients_file(path: str | Path | None) -> Path:
    """The clients file a command works on: the argument, else ./clients.tfvars, else a clear error."""
    if path is not None:
        return Path(path)
    for candidate in (DEFAULT_CLIENTS_FILE, f"{DEFAULT_CLIENTS_FILE}.json"):
        if Path(candidate).is_file():
            return Path(candidate)
    raise InputError(
        f"no clients file given and no {DEFAULT_CLIENTS_FILE} in {Path.cwd()}",
        hint="pass one as an argument (e.g. `tenantctl validate clients.tfvars.example`) or create "
             f"{DEFAULT_CLIENTS_FILE}",
    )
