"""The LiquidQuant packed weight format: ``QuantizedWeight`` and the chunk layout (docs/format.md).

A weight ``W[N, K]`` is stored as 4-bit codes ``q``, per-(channel, group) ``s2``/``z`` bytes and a per-channel
fp32 scale ``s1``: ``W ~ ((q * s2 + z) - 128) * s1``. The codes are packed in 4096-byte chunks, one per
(64-row slice, 128-wide k-block), in exactly the order in which the Hopper kernel's threads need them as
register-A fragments of ``SM90_64xNx32_S32S8S8_RS_TN``:

    byte offset h*2048 + t*16 + j*4 + b  (h < 2, t < 128, j < 4, b < 4) holds
    q[r0, kk] | q[r0 + 8, kk] << 4  with  t0 = t % 4, t1 = (t // 4) % 8, t2 = t // 32,
    r0 = 16*t2 + t1,  kk = 32*(2*h + j // 2) + 16*(j % 2) + 4*t0 + b.

Both directions are one reshape + permute (no index map, no loops).
"""
from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass

import torch

from ._validation import check_tensor

CHUNK_ROWS = 64  # output channels per chunk (the WGMMA M of one warp group)
CHUNK_COLS = 128  # k per chunk (four k-steps of 32)
CHUNK_BYTES = CHUNK_ROWS * CHUNK_COLS // 2
LEVEL1_MAX = 119  # |w1| bound that keeps u = q*s2 + z <= 255 (docs/format.md)
FORMAT_VERSION = 1
OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# A chunk's [64, 128] codes viewed as   [t2=4, nib=2, t1=8] x [h=2, jk=2, which=2, t0=4, b=4]
# (row = 16*t2 + 8*nib + t1, kk = 64*h + 32*jk + 16*which + 4*t0 + b; kstep = 2*h + jk, j = 2*jk + which);
# chunk bytes are ordered [h, t2, t1, t0, jk, which, b] within a nibble plane (nib 0 = rows r0, 1 = rows r0+8).
# With a leading slice dim S and k-block dim KB: rows [S, t2, P, t1, KB, h, jk, which, t0, b] (P planes).
_TO_CHUNK = (0, 4, 2, 5, 1, 3, 8, 6, 7, 9)  # -> [S, KB, P, h, t2, t1, t0, jk, which, b]
_FROM_CHUNK = (0, 4, 2, 5, 1, 3, 7, 8, 6, 9)  # inverse permutation


def to_chunk_planes(x: torch.Tensor) -> torch.Tensor:
    """Reorder ``x [N, K]`` (any dtype) into the chunk layout: ``[N//64, K//128, 2, 4096]``,
    plane 0 = rows r0 (low nibbles), plane 1 = rows r0 + 8 (high nibbles)."""
    n, k = x.shape
    return _rows_to_chunks(x.reshape(n // 64, 4, 2, 8, k))


def from_chunk_planes(planes: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_chunk_planes`: ``[N//64, K//128, 2, 4096] -> [N, K]``."""
    s, kb = planes.shape[:2]
    return _chunks_to_rows(planes).reshape(s * CHUNK_ROWS, kb * CHUNK_COLS)


def _rows_to_chunks(rows: torch.Tensor) -> torch.Tensor:
    """``[S, 4, P, 8, K] -> [S, K//128, P, 4096]``: the chunk permutation, for P = 1 (packed bytes) or 2 (planes)."""
    s, _, p, _, k = rows.shape
    return _permute(rows, (s, 4, p, 8, k // 128, 2, 2, 2, 4, 4), _TO_CHUNK).reshape(s, k // 128, p, CHUNK_BYTES)


def _chunks_to_rows(chunks: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_rows_to_chunks`: ``[S, KB, P, 4096] -> [S, 4, P, 8, KB*128]``."""
    s, kb, p, _ = chunks.shape
    return _permute(chunks, (s, kb, p, 2, 4, 8, 4, 2, 2, 4), _FROM_CHUNK).reshape(s, 4, p, 8, kb * CHUNK_COLS)


def _permute(x: torch.Tensor, shape: tuple[int, ...], perm: tuple[int, ...]) -> torch.Tensor:
    """``x.view(shape).permute(perm)``, materialised. The last dim (b, size 4) stays last, so 1-byte tensors
    move as int32 words: four times fewer elements to shuffle."""
    x = x.contiguous()
    if x.element_size() == 1:
        words = x.view(torch.int32).view(*shape[:-1], 1)
        return words.permute(perm).contiguous().view(x.dtype)
    return x.view(shape).permute(perm).contiguous()


def _nibble_words(x: torch.Tensor) -> torch.Tensor:
    """View a contiguous uint8 tensor ``[..., K]`` as int32 words ``[..., K // 4]``: four bytes, one row."""
    return x.contiguous().view(torch.int32)


def normalize_group_size(group_size, k: int) -> int:
    """Return the group size as an int: 64, a multiple of 128 dividing ``k``, or ``k`` for None/"channel"."""
    if group_size is None or group_size == "channel":
        return k
    if isinstance(group_size, bool) or isinstance(group_size, str):
        raise TypeError(f"group_size: expected an int, None or 'channel', got {group_size!r}")
    try:
        g = operator.index(group_size)
    except TypeError:
        raise TypeError(f"group_size: expected an int, None or 'channel', got {type(group_size).__name__}") from None
    if g != 64 and (g <= 0 or g % 128):
        raise ValueError(f"group_size: expected 64, a multiple of 128, or None/'channel' (per-channel), got {g}")
    if k % g:
        raise ValueError(f"group_size: {g} does not divide K = {k} (in_features)")
    return g


def check_weight_shape(name: str, n: int, k: int) -> None:
    """Shape rules of the kernel: both dims positive multiples of 128."""
    if n <= 0 or n % 128:
        raise ValueError(f"{name}: N (out_features, dim 0) must be a positive multiple of 128, got {n}")
    if k <= 0 or k % 128:
        raise ValueError(f"{name}: K (in_features, dim 1) must be a positive multiple of 128, got {k}")


@dataclass(eq=False, repr=False)
class QuantizedWeight:
    """A LiquidQuant W4 weight ``[out_features, in_features]`` in the layout the Hopper kernel reads.

    packed: uint8 [N//64, K//128, 4096] chunk-ordered 4-bit codes (two per byte)
    params: uint8 [N//64, K//group_size, 64, 2] with [..., 0] = s2 and [..., 1] = z; dim 2 = row in the slice
    s1:     float32 [N] level-1 per-channel scale
    dtype:  dtype of the original weight (the default output dtype of the GEMM)
    """

    packed: torch.Tensor
    params: torch.Tensor
    s1: torch.Tensor
    group_size: int
    out_features: int
    in_features: int
    dtype: torch.dtype = torch.bfloat16

    def __post_init__(self):
        n, k = self.out_features, self.in_features
        check_weight_shape("QuantizedWeight", n, k)
        self.group_size = normalize_group_size(self.group_size, k)
        if self.dtype not in OUT_DTYPES:
            raise TypeError(f"dtype: expected one of {OUT_DTYPES}, got {self.dtype}")
        expected = {
            "packed": (self.packed, torch.uint8, (n // 64, k // 128, CHUNK_BYTES)),
            "params": (self.params, torch.uint8, (n // 64, k // self.group_size, 64, 2)),
            "s1": (self.s1, torch.float32, (n,)),
        }
        for name, (t, dtype, shape) in expected.items():
            check_tensor(name, t, dtypes=dtype, ndim=len(shape), device=self.packed.device, contiguous=False)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape} for N={n}, K={k}, group_size={self.group_size}, "
                                 f"got {tuple(t.shape)}")
            check_tensor(name, t, dtypes=dtype)  # contiguity: the kernel reads plain row-major buffers

    # ---- construction from / to plain codes -------------------------------------------------------------
    @classmethod
    def pack(cls, q, s2, z, s1, group_size, dtype=torch.bfloat16) -> "QuantizedWeight":
        """Pack codes ``q`` uint8 [N, K] (0..15), ``s2``/``z`` uint8 [N, G] and ``s1`` float32 [N].

        Raises ValueError if a code exceeds 15 or any group's largest code would dequantize past 255
        (``q*s2 + z > 255`` wraps in the kernel's 32-bit multiply-add).
        """
        check_tensor("q", q, dtypes=torch.uint8, ndim=2, contiguous=False)
        n, k = q.shape
        check_weight_shape("q", n, k)
        g = normalize_group_size(group_size, k)
        groups = k // g
        for name, t in (("s2", s2), ("z", z)):
            check_tensor(name, t, dtypes=torch.uint8, ndim=2, device=q.device, contiguous=False)
            if tuple(t.shape) != (n, groups):
                raise ValueError(f"{name}: expected shape {(n, groups)} (N, K // group_size), got {tuple(t.shape)}")
        check_tensor("s1", s1, dtypes=torch.float32, ndim=1, device=q.device, contiguous=False)
        qmax = q.view(n, groups, g).amax(dim=2).int()
        if int(qmax.max()) > 15:
            raise ValueError(f"q: 4-bit codes must be <= 15, got {int(qmax.max())}")
        u_max = qmax * s2.int() + z.int()
        if int(u_max.max()) > 255:
            raise ValueError(f"s2, z: q*s2 + z must stay <= 255 (byte lanes of the dequant), got {int(u_max.max())}")

        # Join rows r0 (low nibble) and r0 + 8 (high nibble) first, four bytes per int32 op (codes <= 15 never
        # cross a byte), then move the bytes into chunk order.
        words = _nibble_words(q).view(n // 64, 4, 2, 8, k // 4)
        joined = (words[:, :, 0:1] | (words[:, :, 1:2] << 4)).view(torch.uint8)
        packed = _rows_to_chunks(joined).view(n // 64, k // 128, CHUNK_BYTES)
        params = torch.stack((s2, z), dim=-1).view(n // 64, 64, groups, 2).transpose(1, 2).contiguous()
        return cls(packed, params, s1.contiguous(), g, n, k, dtype)

    def unpack(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(q uint8 [N, K], s2 uint8 [N, G], z uint8 [N, G])``."""
        n, k = self.shape
        # The kernel's split of a packed word, on whole rows: w & 0x0F0F0F0F -> row r0, (w >> 4) & ... -> r0 + 8.
        words = _nibble_words(_chunks_to_rows(self.packed.unsqueeze(2)))
        q = torch.cat((words & 0x0F0F0F0F, (words >> 4) & 0x0F0F0F0F), dim=2).view(torch.uint8).view(n, k)
        sz = self.params.transpose(1, 2).reshape(self.out_features, self.num_groups, 2)
        return q, sz[..., 0].contiguous(), sz[..., 1].contiguous()

    # ---- properties -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def num_groups(self) -> int:
        return self.in_features // self.group_size

    @property
    def per_channel(self) -> bool:
        return self.group_size == self.in_features

    @property
    def nbytes(self) -> int:
        """Bytes of packed codes + group params + s1."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.params, self.s1))

    # ---- devices ----------------------------------------------------------------------------------------
    def to(self, device, non_blocking: bool = False) -> "QuantizedWeight":
        def move(t):
            return t.to(device, non_blocking=non_blocking)

        return dataclasses.replace(self, packed=move(self.packed), params=move(self.params), s1=move(self.s1))

    def cuda(self, device=None) -> "QuantizedWeight":
        if device is None or isinstance(device, int):
            device = torch.device("cuda", device)
        return self.to(device)

    def cpu(self) -> "QuantizedWeight":
        return self.to("cpu")

    # ---- state dicts ------------------------------------------------------------------------------------
    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Tensors for a state_dict / safetensors file. Metadata goes in small CPU tensors:
        ``meta`` int64 [format_version, out_features, in_features, group_size], ``dtype`` uint8 (ASCII name)."""
        meta = torch.tensor([FORMAT_VERSION, self.out_features, self.in_features, self.group_size])
        dtype_name = torch.tensor(list(str(self.dtype).removeprefix("torch.").encode()), dtype=torch.uint8)
        tensors = {"packed": self.packed, "params": self.params, "s1": self.s1, "meta": meta, "dtype": dtype_name}
        return {prefix + key: t for key, t in tensors.items()}

    @classmethod
    def from_tensors(cls, tensors: dict, prefix: str = "") -> "QuantizedWeight":
        """Inverse of :meth:`to_tensors` (tensors may live on any device; the result lives where ``packed`` is)."""
        missing = [prefix + key for key in ("packed", "params", "s1", "meta", "dtype") if prefix + key not in tensors]
        if missing:
            raise ValueError(f"tensors: missing keys {missing} of a LiquidQuant weight")
        version, n, k, g = (int(v) for v in tensors[prefix + "meta"].tolist())
        if version != FORMAT_VERSION:
            raise ValueError(f"tensors: LiquidQuant format version {version} is not supported "
                             f"(this liquidgemm reads version {FORMAT_VERSION})")
        name = bytes(tensors[prefix + "dtype"].tolist()).decode()
        dtype = getattr(torch, name, None)
        if dtype not in OUT_DTYPES:
            raise ValueError(f"tensors: unknown weight dtype {name!r}")
        return cls(tensors[prefix + "packed"], tensors[prefix + "params"], tensors[prefix + "s1"], g, n, k, dtype)

    def __repr__(self) -> str:
        group = "channel" if self.per_channel else self.group_size
        ratio = 2 * self.out_features * self.in_features / self.nbytes
        return (f"QuantizedWeight(out_features={self.out_features}, in_features={self.in_features}, "
                f"group_size={group}, dtype={self.dtype}, device={self.device}, "
                f"nbytes={self.nbytes:,} ({ratio:.2f}x smaller than bf16))")
