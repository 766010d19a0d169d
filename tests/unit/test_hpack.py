"""HPACK decoding and encoding against RFC 7541's own examples (Appendix C) and Huffman table.

The shims' gRPC client decodes grpcio's response headers with this module, so it must get
every representation right: integers across prefix boundaries, literals with and without
indexing, the dynamic table with eviction and size updates, and Huffman-coded strings.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spiderpool_cni import hpack


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- C.1 integer representation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefix", "encoded"),
    [(10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a"), (31, 5, "1f00"), (127, 7, "7f00")],
)
def test_integers_match_rfc_c1(value: int, prefix: int, encoded: str) -> None:
    """Integers encode and decode as in RFC 7541 C.1 (including the prefix-filling edge)."""
    assert hpack.encode_int(value, prefix) == h(encoded)
    assert hpack.decode_int(h(encoded), 0, prefix) == (value, len(h(encoded)))


def test_truncated_integer_is_an_error() -> None:
    """A multi-byte integer cut short raises HpackError."""
    with pytest.raises(hpack.HpackError):
        hpack.decode_int(h("1f9a"), 0, 5)


# -- C.2 header field representations ----------------------------------------------------


@pytest.mark.parametrize(
    ("block", "header", "table_size"),
    [
        (
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            (b"custom-key", b"custom-header"),
            55,
        ),
        ("040c 2f73 616d 706c 652f 7061 7468", (b":path", b"/sample/path"), 0),
        ("1008 7061 7373 776f 7264 0673 6563 7265 74", (b"password", b"secret"), 0),
        ("82", (b":method", b"GET"), 0),
    ],
    ids=["C.2.1-incremental", "C.2.2-without-indexing", "C.2.3-never-indexed", "C.2.4-indexed"],
)
def test_single_representations_match_rfc_c2(
    block: str, header: tuple[bytes, bytes], table_size: int
) -> None:
    """Each literal kind decodes to its header and only incremental indexing grows the table."""
    decoder = hpack.Decoder()
    assert decoder.decode(h(block)) == [header]
    assert decoder.size == table_size


# -- C.3 / C.4 requests, C.5 / C.6 responses -----------------------------------------------

FIRST_REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"www.example.com"),
]
SECOND_REQUEST = [*FIRST_REQUEST, (b"cache-control", b"no-cache")]
THIRD_REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/index.html"),
    (b":authority", b"www.example.com"),
    (b"custom-key", b"custom-value"),
]
REQUESTS = [FIRST_REQUEST, SECOND_REQUEST, THIRD_REQUEST]
REQUEST_TABLE_SIZES = [57, 110, 164]

C3 = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
]
C4 = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["C.3-plain", "C.4-huffman"])
def test_request_sequence_shares_one_dynamic_table(blocks: list[str]) -> None:
    """Three requests decode in order, reusing the dynamic table, with the RFC's table sizes."""
    decoder = hpack.Decoder()
    for block, expected, size in zip(blocks, REQUESTS, REQUEST_TABLE_SIZES, strict=True):
        assert decoder.decode(h(block)) == expected
        assert decoder.size == size


RESPONSES = [
    [
        (b":status", b"302"),
        (b"cache-control", b"private"),
        (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
        (b"location", b"https://www.example.com"),
    ],
    [
        (b":status", b"307"),
        (b"cache-control", b"private"),
        (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
        (b"location", b"https://www.example.com"),
    ],
    [
        (b":status", b"200"),
        (b"cache-control", b"private"),
        (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT"),
        (b"location", b"https://www.example.com"),
        (b"content-encoding", b"gzip"),
        (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
    ],
]
RESPONSE_TABLE_SIZES = [222, 222, 215]
C6 = [
    """4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3""",
    "4883 640e ffc1 c0bf",
    """88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07""",
]


def _plain_response_blocks() -> list[bytes]:
    """C.5's blocks: the same field sequence as C.6 with plain string literals."""

    def lit(index: int, value: bytes) -> bytes:
        return hpack.encode_int(index, 6, 0x40) + hpack.encode_int(len(value), 7) + value

    first = lit(8, b"302") + lit(24, b"private") + lit(33, b"Mon, 21 Oct 2013 20:13:21 GMT")
    first += lit(46, b"https://www.example.com")
    second = lit(8, b"307") + h("c1 c0 bf")
    third = h("88 c1") + lit(33, b"Mon, 21 Oct 2013 20:13:22 GMT") + h("c0") + lit(26, b"gzip")
    third += lit(55, b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
    return [first, second, third]


def test_c5_first_block_matches_the_rfc_bytes() -> None:
    """The plain C.5.1 block built here is byte for byte the RFC's."""
    assert _plain_response_blocks()[0][:12] == h("4803 3330 3258 0770 7269 7661 7465")[:12]
    assert _plain_response_blocks()[1] == h("4803 3330 37c1 c0bf")


@pytest.mark.parametrize("huffman", [False, True], ids=["C.5-plain", "C.6-huffman"])
def test_response_sequence_evicts_from_a_256_byte_table(huffman: bool) -> None:
    """Three responses decode with a 256-byte table, evicting entries as the RFC shows."""
    decoder = hpack.Decoder(256)
    blocks = [h(b) for b in C6] if huffman else _plain_response_blocks()
    for block, expected, size in zip(blocks, RESPONSES, RESPONSE_TABLE_SIZES, strict=True):
        assert decoder.decode(block) == expected
        assert decoder.size == size
    assert [name for name, _ in decoder.entries] == [b"set-cookie", b"content-encoding", b"date"]


# -- dynamic table size updates and errors -------------------------------------------------


def test_size_update_to_zero_empties_the_table() -> None:
    """A size update to 0 at the start of a block evicts every entry."""
    decoder = hpack.Decoder()
    decoder.decode(h(C3[0]))
    assert decoder.entries
    decoder.decode(h("20"))
    assert (decoder.entries, decoder.size, decoder.max_size) == ([], 0, 0)


def test_size_update_above_the_settings_limit_is_an_error() -> None:
    """The encoder may not grow the table beyond SETTINGS_HEADER_TABLE_SIZE."""
    with pytest.raises(hpack.HpackError, match="above the limit"):
        hpack.Decoder(4096).decode(hpack.encode_int(4097, 5, 0x20))


def test_size_update_after_a_field_is_an_error() -> None:
    """Size updates are only allowed at the beginning of a block (section 4.2)."""
    with pytest.raises(hpack.HpackError):
        hpack.Decoder().decode(h("82 20"))


@pytest.mark.parametrize("block", ["80", "c0", "ff00"], ids=["index-0", "empty-dynamic", "past-end"])
def test_bad_indexes_are_errors(block: str) -> None:
    """Index 0 and indexes beyond both tables are rejected."""
    with pytest.raises(hpack.HpackError):
        hpack.Decoder().decode(h(block))


def test_string_running_past_the_block_is_an_error() -> None:
    """A literal whose length exceeds the block is rejected."""
    with pytest.raises(hpack.HpackError):
        hpack.Decoder().decode(h("400a 6375"))


# -- Huffman -------------------------------------------------------------------------------


def test_huffman_codes_are_rfc_appendix_b() -> None:
    """Spot-check Appendix B: '0' 00000, 'a' 00011, ' ' 010100, 0 = 1ff8/13, EOS 3fffffff/30."""
    codes = hpack.huffman_codes()
    assert codes[ord("0")] == (0x0, 5)
    assert codes[ord("a")] == (0x3, 5)
    assert codes[ord(" ")] == (0x14, 6)
    assert codes[0] == (0x1FF8, 13)
    assert codes[ord("~")] == (0x1FFD, 13)
    assert codes[255] == (0x3FFFFEE, 26)
    assert codes[256] == (0x3FFFFFFF, 30)
    # A prefix code over 257 symbols fills the code space exactly (Kraft equality).
    assert sum(2 ** (30 - length) for _, length in codes) == 2**30


def _huffman_encode(data: bytes) -> bytes:
    codes = hpack.huffman_codes()
    acc = 0
    bits = 0
    for byte in data:
        code, length = codes[byte]
        acc = (acc << length) | code
        bits += length
    pad = -bits % 8
    acc = (acc << pad) | ((1 << pad) - 1)
    return acc.to_bytes((bits + pad) // 8, "big") if bits + pad else b""


@given(st.binary(max_size=200))
def test_huffman_round_trips_any_bytes(data: bytes) -> None:
    """Any byte string encoded with the Appendix B code decodes back to itself."""
    assert hpack.huffman_decode(_huffman_encode(data)) == data


@pytest.mark.parametrize(
    "encoded",
    ["ff ff ff ff", "07 ff", "02"],
    ids=["EOS-inside", "padding-over-7-bits", "padding-not-ones"],
)
def test_bad_huffman_strings_are_errors(encoded: str) -> None:
    """An EOS symbol, padding longer than 7 bits or padding with zeros is rejected."""
    with pytest.raises(hpack.HpackError):
        hpack.huffman_decode(h(encoded))


# -- the request encoder -------------------------------------------------------------------


def test_encoder_indexes_static_hits_and_writes_literals_without_indexing() -> None:
    """:method POST is one byte (index 3), :path reuses its static name, te is written out in full."""
    block = hpack.encode([(b":method", b"POST"), (b":path", b"/x"), (b"te", b"trailers")])
    assert block == h("83") + h("04 02") + b"/x" + h("00 02") + b"te" + h("08") + b"trailers"


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=300)), max_size=12))
def test_encoded_headers_decode_back_without_touching_the_table(headers: list[tuple[bytes, bytes]]) -> None:
    """Whatever the headers, encode then decode returns them and leaves the dynamic table empty."""
    decoder = hpack.Decoder()
    assert decoder.decode(hpack.encode(headers)) == headers
    assert decoder.entries == []
