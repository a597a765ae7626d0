"""The stress corpus of the tokenizer conformance suite: text that breaks canonical views.

Each entry is (name, text). Written out here rather than sampled so a failure names the text.
Chat-template renderings are added per family by the suite itself (they need each tokenizer).
"""

from __future__ import annotations

from conftest import gsm8k

PYTHON = '''def total(clips: list[int]) -> int:
    """Sum clips sold per month."""
    result = 0
\tfor n in clips:  # a tab-indented line among spaces
        if n > 0:
            result += n
    return result


class Shop:
    def __init__(self):
        self.items = {"apples": 12, "pears": 7}
'''

YAML = """run:
  name: distill-llama
  teachers:
    - name: qwen3
      weight: 0.8
    - name: phi
      weight: 0.2
  training:
\tsteps: 30000   # tab
    lr: 3.0e-5
"""

MARKDOWN = """| model | GSM8K | MATH |
|:------|------:|-----:|
| Llama-3.2-1B | 12.89 | 4.1 |
| + P-KL (Qwen3) | 38.85 | 9.7 |

* item one
  * nested  item
1. first
> quoted **bold** _em_ `code`
"""

UNICODE = [
    ("cjk", "日本語のテキストと中文文本，还有한국어 문장。"),
    ("emoji", "🙂 👍🏽 🇫🇷 😀😃😄 ✨"),
    ("zwj", "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder, 🏳️‍🌈 flag"),
    ("rtl", "שלום עולם and مرحبا بالعالم ١٢٣ mixed"),
    ("combining", "Cafe\u0301 nai\u0308ve Z\u0351\u0327a\u0302lgo\u0308 e\u0301\u0301"),
    ("nfc-nfkc", "ﬁne ﬂow ℌ ① ² ｆｕｌｌ　ｗｉｄｔｈ"),
    ("controls", "nul\x00 bell\x07 cr\r\nlf del\x7f"),
    ("symbols", "≤ ≥ ± × ÷ € £ ¥ → ← ∑ ∫ √ ∞ …"),
]


def numerals() -> list[tuple[str, str]]:
    digits = "1234567890" * 2
    out = [(f"digits-{n}", f"{digits[:n]} and {digits[:n]}.") for n in range(1, 13)]
    out.append(("numbers", "In 2024, 1,234,567 people paid $12.50 each (3.14159%) on 12/31; 0007 x 100000000000."))
    return out


def whitespace() -> list[tuple[str, str]]:
    out = [(f"spaces-{n}", f"a{' ' * n}b") for n in (1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 40)]
    out += [(f"newlines-{n}", f"a{chr(10) * n}b") for n in (1, 2, 3, 5, 10, 31, 40)]
    out += [(f"indent-{n}", f"x:\n{' ' * n}y\n{' ' * n}\tz") for n in (2, 4, 8, 12, 31)]
    out += [("leading-space", " leading"), ("leading-spaces", "    leading"), ("trailing", "trailing   ")]
    out += [("tabs", "a\tb\t\tc\t\t\t\td"), ("mixed-ws", " \t \n \r\n\t  x  \n\n  ")]
    return out


def stress_corpus() -> list[tuple[str, str]]:
    """Every (name, text) of the stress corpus, GSM8K problems included."""
    texts = [(f"gsm8k-{k}", text) for k, text in enumerate(gsm8k("test")[:40])]
    texts += [("python", PYTHON), ("yaml", YAML), ("markdown", MARKDOWN), *UNICODE]
    return texts + numerals() + whitespace()
