"""HPACK (RFC 7541) for the shims' gRPC client: a full decoder and a minimal encoder.

The shims read the agent's response headers and trailers, which grpcio compresses with
the dynamic table and Huffman coding, so the decoder implements all of RFC 7541: the
static table (Appendix A), the dynamic table with size updates (section 4), integer and
string literals (section 5) and Huffman decoding with the code of Appendix B. The
request headers the shim sends are few and small, so the encoder only writes indexed
static entries and literals without indexing, never Huffman (section 6.2.2).

Stdlib-only and import-free: the shims run with ``python -IS`` on every CNI call.
"""


class HpackError(ValueError):
    """A header block violates RFC 7541 (a COMPRESSION_ERROR in HTTP/2 terms)."""


# RFC 7541 Appendix A: the static table, index 1 to 61.
STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)

# RFC 7541 Appendix B: the Huffman code length of each symbol 0..256 (256 is EOS), one
# letter per symbol, "A" meaning 5 bits up to "Z" meaning 30. The code is canonical
# (codes of one length are consecutive, in symbol order), so the lengths determine every
# code; tests/unit/test_hpack.py checks the decoder against the RFC's Appendix C examples.
_HUFFMAN_LENGTHS = (
    "ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCC"
    "DCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQ"
    "RQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ"
)
_EOS = 256
_ENTRY_OVERHEAD = 32  # RFC 7541 section 4.1
DEFAULT_TABLE_SIZE = 4096  # SETTINGS_HEADER_TABLE_SIZE initial value (RFC 7540 section 6.5.2)

# Canonical decoding tables, built on first use: a response without Huffman strings
# never pays for them.
_first_code: list[int] = []
_count: list[int] = []
_offset: list[int] = []
_symbols: list[int] = []


def huffman_code_lengths() -> list[int]:
    """The Appendix B code length of every symbol, EOS last."""
    return [ord(c) - ord("A") + 5 for c in _HUFFMAN_LENGTHS]


def huffman_codes() -> list[tuple[int, int]]:
    """The Appendix B ``(code, bit length)`` of every symbol, rebuilt canonically."""
    lengths = huffman_code_lengths()
    order = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
    codes = [(0, 0)] * len(lengths)
    code = 0
    prev = lengths[order[0]]
    for i, sym in enumerate(order):
        if i:
            code = (code + 1) << (lengths[sym] - prev)
            prev = lengths[sym]
        codes[sym] = (code, lengths[sym])
    return codes


def _build_huffman() -> None:
    lengths = huffman_code_lengths()
    order = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
    first = [0] * 31
    count = [0] * 31
    offset = [0] * 31
    code = 0
    prev = lengths[order[0]]
    for i, sym in enumerate(order):
        length = lengths[sym]
        if i:
            code = (code + 1) << (length - prev)
            prev = length
        if count[length] == 0:
            first[length] = code
            offset[length] = i
        count[length] += 1
    _symbols[:] = order
    _first_code[:] = first
    _count[:] = count
    _offset[:] = offset


def huffman_decode(data: bytes) -> bytes:
    """Decode a Huffman-coded string literal (RFC 7541 section 5.2)."""
    if not _symbols:
        _build_huffman()
    first, count, offset, symbols = _first_code, _count, _offset, _symbols
    out = bytearray()
    code = 0
    length = 0
    for byte in data:
        for shift in (7, 6, 5, 4, 3, 2, 1, 0):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            if length < 5:
                continue
            if length > 30:
                raise HpackError("Huffman code longer than 30 bits")
            index = code - first[length]
            if 0 <= index < count[length]:
                sym = symbols[offset[length] + index]
                if sym == _EOS:
                    raise HpackError("EOS symbol inside a Huffman string")
                out.append(sym)
                code = 0
                length = 0
    # Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("invalid Huffman padding")
    return bytes(out)


def decode_int(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """Read an integer with an N-bit prefix at ``data[pos]`` (section 5.1); return (value, next)."""
    if pos >= len(data):
        raise HpackError("truncated integer")
    mask = (1 << prefix_bits) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise HpackError("truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 28:
            raise HpackError("integer too large")


def encode_int(value: int, prefix_bits: int, first_byte_flags: int = 0) -> bytes:
    """Write an integer with an N-bit prefix, OR-ing the pattern bits into the first byte."""
    mask = (1 << prefix_bits) - 1
    if value < mask:
        return bytes((first_byte_flags | value,))
    out = bytearray((first_byte_flags | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_string(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        raise HpackError("truncated string literal")
    huffman = data[pos] & 0x80
    length, pos = decode_int(data, pos, 7)
    end = pos + length
    if end > len(data):
        raise HpackError("string literal runs past the header block")
    raw = data[pos:end]
    return (huffman_decode(raw) if huffman else raw), end


def _encode_string(value: bytes) -> bytes:
    return encode_int(len(value), 7) + value


class Decoder:
    """One connection's HPACK decoding context: the dynamic table persists across blocks."""

    def __init__(self, max_table_size: int = DEFAULT_TABLE_SIZE) -> None:
        # The limit we advertised (SETTINGS_HEADER_TABLE_SIZE); the encoder may lower
        # the table's size below it with size updates, never raise it above.
        self.settings_limit = max_table_size
        self.max_size = max_table_size
        self.size = 0
        self.entries: list[tuple[bytes, bytes]] = []  # newest first

    def _lookup(self, index: int) -> tuple[bytes, bytes]:
        if index <= 0:
            raise HpackError("header index 0")
        if index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dyn = index - len(STATIC_TABLE) - 1
        if dyn >= len(self.entries):
            raise HpackError(f"header index {index} beyond the dynamic table")
        return self.entries[dyn]

    def _evict(self) -> None:
        while self.size > self.max_size and self.entries:
            name, value = self.entries.pop()
            self.size -= len(name) + len(value) + _ENTRY_OVERHEAD

    def _add(self, name: bytes, value: bytes) -> None:
        # Section 4.4: an entry larger than the table empties it and is not added.
        self.entries.insert(0, (name, value))
        self.size += len(name) + len(value) + _ENTRY_OVERHEAD
        self._evict()

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """Decode one complete header block into ``(name, value)`` pairs, in order."""
        headers: list[tuple[bytes, bytes]] = []
        pos = 0
        end = len(block)
        while pos < end:
            byte = block[pos]
            if byte & 0x80:  # 6.1 indexed header field
                index, pos = decode_int(block, pos, 7)
                headers.append(self._lookup(index))
                continue
            if byte & 0xE0 == 0x20:  # 6.3 dynamic table size update
                if headers:
                    raise HpackError("table size update after a header field")
                size, pos = decode_int(block, pos, 5)
                if size > self.settings_limit:
                    raise HpackError(f"table size update {size} above the limit {self.settings_limit}")
                self.max_size = size
                self._evict()
                continue
            if byte & 0xC0 == 0x40:  # 6.2.1 literal with incremental indexing
                prefix = 6
                index_it = True
            else:  # 6.2.2 without indexing (0000xxxx), 6.2.3 never indexed (0001xxxx)
                prefix = 4
                index_it = False
            index, pos = decode_int(block, pos, prefix)
            if index:
                name = self._lookup(index)[0]
            else:
                name, pos = _decode_string(block, pos)
            value, pos = _decode_string(block, pos)
            if index_it:
                if len(name) + len(value) + _ENTRY_OVERHEAD > self.max_size:
                    self.entries.clear()
                    self.size = 0
                else:
                    self._add(name, value)
            headers.append((name, value))
        return headers


def encode(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Encode a header list statelessly: static-table hits indexed, the rest literal unindexed."""
    out = bytearray()
    for name, value in headers:
        name_index = 0
        for i, (sname, svalue) in enumerate(STATIC_TABLE, 1):
            if sname == name:
                if svalue == value:
                    name_index = -i
                    break
                if not name_index:
                    name_index = i
        if name_index < 0:
            out += encode_int(-name_index, 7, 0x80)
        elif name_index:
            out += encode_int(name_index, 4) + _encode_string(value)
        else:
            out += b"\x00" + _encode_string(name) + _encode_string(value)
    return bytes(out)
