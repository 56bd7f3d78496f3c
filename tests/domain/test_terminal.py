"""What a host's output may not do to a terminal (``domain.terminal``): every escape sequence and control
character dropped, SGR colours kept on request, and the JSON answers' ESC-only form."""

from __future__ import annotations

import re

import pytest

from nodeops.domain.terminal import strip_ansi, strip_controls

ESC = "\x1b"
ST = ESC + "\\"
# what must never reach a terminal: an ESC or any control but tab and newline
DRIVES_A_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.mark.parametrize(
    ("raw", "with_colours", "without"),
    [
        pytest.param("plain 文字\ttab", "plain 文字\ttab", "plain 文字\ttab", id="text_tab_and_cjk_stay"),
        pytest.param(f"{ESC}[32mok{ESC}[0m", f"{ESC}[32mok{ESC}[0m", "ok", id="sgr_colour"),
        pytest.param(f"{ESC}[1;38;2;1;2;3mx{ESC}[m", f"{ESC}[1;38;2;1;2;3mx{ESC}[m", "x", id="sgr_rgb_and_reset"),
        pytest.param(f"{ESC}]0;owned\x07title", "title", "title", id="osc_window_title_ended_by_bel"),
        pytest.param(f"{ESC}]8;;http://x{ST}link{ESC}]8;;{ST}", "link", "link", id="osc_hyperlink_ended_by_st"),
        pytest.param(f"{ESC}]0;no end\nnext", "\nnext", "\nnext", id="unterminated_osc_stops_at_the_line_end"),
        pytest.param(f"{ESC}[2J{ESC}[Hclear", "clear", "clear", id="csi_erase_and_cursor_home"),
        pytest.param(f"{ESC}[3A{ESC}[?25l{ESC}[6n", "", "", id="csi_cursor_up_private_mode_and_report"),
        pytest.param(f"{ESC}creset", "reset", "reset", id="esc_c_full_reset"),
        pytest.param(f"{ESC}7{ESC}(0q{ESC}(B{ESC}8", "q", "q", id="save_restore_and_charset_escapes"),
        pytest.param(f"{ESC}P1$r{ST}dcs", "dcs", "dcs", id="dcs_string"),
        pytest.param(f"{ESC}_apc{ST}{ESC}^pm{ST}x", "x", "x", id="apc_and_pm_strings"),
        pytest.param("\x9b2J\x9d0;t\x07c1", "c1", "c1", id="eight_bit_csi_and_osc"),
        pytest.param("bell\x07 bs\x08 so\x0e del\x7f", "bell bs so del", "bell bs so del", id="lone_c0_and_del"),
        pytest.param("secret\rshown", "secretshown", "secretshown", id="carriage_return_hides_nothing"),
        pytest.param(f"lone {ESC}", "lone ", "lone ", id="a_lone_esc_at_the_end"),
    ],
)
def test_strip_controls_keeps_only_text_and_on_request_colours(raw, with_colours, without):
    assert strip_controls(raw, keep_sgr=True) == with_colours
    assert strip_controls(raw) == without
    assert not DRIVES_A_TERMINAL.search(strip_controls(raw))
    assert not DRIVES_A_TERMINAL.search(re.sub(r"\x1b\[[0-9;:]*m", "", strip_controls(raw, keep_sgr=True)))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(f"{ESC}[31mred{ESC}[0m {ESC}]0;t\x07{ESC}c", "red ", id="every_escape_sequence"),
        pytest.param("no escape\x07", "no escape\x07", id="without_esc_the_text_is_left_as_it_is"),
    ],
)
def test_strip_ansi_drops_escape_sequences_as_the_json_answers_do(raw, expected):
    assert strip_ansi(raw) == expected
