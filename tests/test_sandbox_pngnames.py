"""PNG file names are never a Windows device name: whatever follows a reserved name (an
extension, spaces, dots, more text), in any case and with superscript digits, the part of the
file name before its first dot is not one (Windows ignores what follows it, and trailing
spaces and dots)."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from wachat_async.cli.pngnames import png_name

DEVICES = ["CON", "PRN", "AUX", "NUL"] + [
    f"{port}{digit}" for port in ("COM", "LPT") for digit in [*"123456789", "¹", "²", "³"]
]
#: What Windows reads as the device: the name before the first dot, trailing spaces and dots
#: dropped, superscripts as digits, in any case.
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"} | {
    f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789"
}


def windows_device(file_name: str) -> str | None:
    """The device Windows would open for ``file_name``, if any."""
    head = file_name.split(".", 1)[0].rstrip(" .")
    plain = unicodedata.normalize("NFKC", head).upper()
    return plain if plain in WINDOWS_DEVICES else None


def any_case(text: str) -> st.SearchStrategy[str]:
    return st.tuples(*[st.sampled_from([c.lower(), c.upper()]) for c in text]).map("".join)


tails = st.one_of(
    st.just(""),
    st.sampled_from([".txt", ".tar.gz", ".", "..", " ", "  .png", " .x", ". .", ".png"]),
    st.text(alphabet=" ._-abcxyz0123456789/:\\", max_size=12).map(lambda t: "." + t),
    st.text(max_size=8),
)


@given(st.sampled_from(DEVICES).flatmap(any_case), tails)
def test_no_png_name_is_a_windows_device(device: str, tail: str) -> None:
    name = device + tail
    file_name = png_name(name)
    assert windows_device(file_name) is None, (name, file_name)
    assert file_name.endswith(".png")
    assert png_name(name) == file_name  # stable


def test_every_reserved_name_and_its_common_forms() -> None:
    seen: dict[str, str] = {}
    for device in DEVICES:
        for variant in (device, device.lower(), device.capitalize()):
            for tail in ("", ".txt", ".tar.gz", " ", ".", " .txt", "..txt", ".PNG"):
                name = variant + tail
                file_name = png_name(name)
                assert windows_device(file_name) is None, (name, file_name)
                assert seen.setdefault(file_name.lower(), name) == name  # never shared
    assert png_name("prn.txt").startswith("prn_.txt-")  # readable still
    assert png_name("com1.tar.gz").startswith("com1_.tar.gz-")
    assert png_name("store.txt") == "store.txt.png"  # ordinary names keep themselves
    assert png_name("console.txt") == "console.txt.png"  # a device name only as a whole part


@given(st.text(max_size=40))
def test_no_name_at_all_gives_a_device(name: str) -> None:
    assert windows_device(png_name(name)) is None
