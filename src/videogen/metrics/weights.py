"""Weight files of the feature networks: find them, hash them, read them, and assign them.

Nothing is downloaded: every file is given by path. A missing file gets an error that names the
file and where it comes from; a file whose keys or shapes do not match the network names the
first offending keys, so a wrong or truncated file never yields a silently wrong number.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

# Where each standard file comes from; quoted in the error for a missing file.
SOURCES: dict[str, str] = {
    "i3d": (
        "an I3D Kinetics-400 weight file: either 'i3d_pretrained_400.pt' (pytorch-i3d layout, "
        "shipped with the FVD code of VideoGPT, TATS, DIGAN and PVDM) or StyleGAN-V's TorchScript "
        "'i3d_torchscript.pt' (the file MCVD and StyleGAN-V download for FVD)"
    ),
    "c3d": (
        "a C3D UCF-101 weight file: either TGAN2's chainer file 'conv3d_deepnetA_ucf.npz' "
        "(pfnet-research/tgan2, C3DVersion1UCF101) or StyleGAN-V's TorchScript 'c3d_ucf101.pt'"
    ),
    "c3d_mean": "TGAN2's C3D mean file 'mean2.npz' (key 'mean', (3, 16, H, W) in BGR order)",
    "alexnet": (
        "torchvision's ImageNet AlexNet state dict 'alexnet-owt-7be5be79.pth' "
        "(keys features.0.weight ... classifier.6.bias)"
    ),
    "lpips": "the LPIPS v0.1 linear layers 'alex.pth' from richzhang/PerceptualSimilarity",
}


class WeightFileError(ValueError):
    """A weight file is missing, unreadable, or does not match the network."""


def require_file(path: str | Path | None, kind: str) -> Path:
    """Return ``path`` as a ``Path`` if it is a file; otherwise raise naming the file and source."""
    source = SOURCES.get(kind, kind)
    if path is None:
        raise WeightFileError(f"no {kind} weight file given; this metric needs {source}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightFileError(
            f"{kind} weight file not found: {p}. Expected {source}. Nothing is downloaded at run "
            "time: fetch the file once and pass its path."
        )
    return p


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) so repeated evaluations hash it once."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def is_torchscript(path: str | Path) -> bool:
    """TorchScript archives are zip files holding ``constants.pkl`` and a ``code/`` folder;
    files written by ``torch.save`` hold neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def load_torchscript(
    path: Path, kind: str, *, trusted: bool, device: torch.device | str = "cpu"
) -> torch.jit.ScriptModule:
    """Load a TorchScript archive, only when the caller says the file is trusted: TorchScript
    stores code, and that code runs when the network is called (it can read and write files).
    The state-dict formats are the safe default; this route exists for StyleGAN-V's files."""
    if not trusted:
        raise WeightFileError(
            f"{path} is a TorchScript archive: it carries its own code, which runs when the "
            "network is called. Load it only if you trust where it comes from, with "
            "--trust-torchscript (trust_torchscript=True in Python); otherwise use the "
            f"state-dict file instead: {SOURCES.get(kind, kind)}"
        )
    return torch.jit.load(str(path), map_location=device)


def read_state(path: Path) -> dict[str, Tensor]:
    """Read a flat ``{name: tensor}`` mapping from ``.safetensors``, ``.npz`` or a torch file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                state = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # re-raised with the file named
        raise WeightFileError(f"cannot read weight file {path}: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state and len(state) <= 3:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightFileError(f"{path} does not hold a flat mapping of names to tensors")
    return dict(state)


def empty(cls: type[nn.Module], *args: object, **kwargs: object) -> nn.Module:
    """``cls(*args, **kwargs)`` with uninitialised storage: every tensor is then set by
    ``assign``, so the random initialisation (seconds for C3D's 78M parameters) is skipped."""
    with torch.device("meta"):
        module = cls(*args, **kwargs)
    return module.to_empty(device="cpu")


def assign(
    module: nn.Module,
    state: Mapping[str, Tensor],
    *,
    source_key: Callable[[str], str] = lambda k: k,
    ignore: Iterable[str] = (),
    optional: Iterable[str] = ("num_batches_tracked",),
    path: str | Path = "<state>",
) -> None:
    """Copy ``state`` into ``module`` and check that every key is consumed and every shape matches.

    ``source_key`` maps a module key to the file's key. Keys of the file that start with a prefix
    in ``ignore`` are known to be unused (an ImageNet head, say). Module keys ending with a name
    in ``optional`` may be absent from the file (old BatchNorm files lack the step counter);
    they are zeroed, so ``module`` may come from ``to_empty`` (no time spent on a random init).
    """
    ignore, optional = tuple(ignore), tuple(optional)
    own = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    missing, bad_shape, used = [], [], set()
    with torch.no_grad():
        for name, tensor in own.items():
            key = source_key(name)
            if key not in state:
                if name.endswith(optional):
                    tensor.zero_()
                else:
                    missing.append(key)
                continue
            value = state[key]
            if tuple(value.shape) != tuple(tensor.shape):
                bad_shape.append(f"{key}: file {tuple(value.shape)}, network {tuple(tensor.shape)}")
                continue
            tensor.copy_(value.to(tensor.dtype))
            used.add(key)
    unused = [k for k in state if k not in used and not k.startswith(ignore)]
    unused = [k for k in unused if not k.endswith(optional)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
    if bad_shape:
        problems.append(f"{len(bad_shape)} with the wrong shape (e.g. {'; '.join(bad_shape[:3])})")
    if unused:
        problems.append(f"{len(unused)} not used by the network (e.g. {', '.join(unused[:4])})")
    if problems:
        raise WeightFileError(
            f"{path} does not match {type(module).__name__}: keys " + ", ".join(problems)
        )
