"""The Chinese generated data of notebooks 07 and 11: the sentiment world and the instruction tasks."""

import random

import pytest

from llmcourse.recipes.chat_pipeline import ChatPipelineConfig, preference_pairs
from llmcourse.tasks import instructions, instructions_zh, sentiment, sentiment_zh
from llmcourse.tasks.instructions import (
    Example,
    is_correct,
    make_instructions,
    make_preferences,
    task_family,
)

ZH = sentiment_zh


# ------------------------------------------------------------------ the sentiment world (07)
def test_world_picks_the_language_and_rejects_others():
    assert sentiment.world("en") is sentiment and sentiment.world("zh") is sentiment_zh
    for name in ("POSITIVE", "NEGATIVE", "SEEN_WORDS", "ANIMALS", "CITIES"):
        assert hasattr(sentiment_zh, name), name
    with pytest.raises(ValueError, match="'en' and 'zh'"):
        sentiment.world("fr")


def test_every_word_of_the_lesson_is_one_distinct_character():
    """Characters are the tokens in Chinese: each adjective, animal, call, food and country is one
    character, and no character plays two parts (美 as 'beautiful' and as 美国 would blur the test)."""
    calls = [c for c, _ in ZH.ANIMALS.values()]
    foods = [f for _, f in ZH.ANIMALS.values()]
    parts = [*ZH.POSITIVE, *ZH.NEGATIVE, *ZH.THINGS, *ZH.ANIMALS, *calls, *foods]
    parts += ZH.CITIES.values()
    assert all(len(w) == 1 for w in parts)
    assert len(set(parts)) == len(parts), "a character plays two parts"
    cue_text = "".join(f for frames in ZH.CUES for f in frames)
    assert not set(cue_text) & (set(ZH.POSITIVE) | set(ZH.NEGATIVE)), "an adjective inside a cue"


def test_chinese_reviews_keep_one_polarity_and_use_every_adjective():
    docs = ZH.generated_corpus(300, seed=5)
    assert docs == ZH.generated_corpus(300, seed=5) and docs != ZH.generated_corpus(300, seed=6)
    reviews = 0
    for doc in docs:
        pos, neg = set(doc) & set(ZH.POSITIVE), set(doc) & set(ZH.NEGATIVE)
        assert not (pos and neg), f"a review mixes polarities: {doc}"
        reviews += bool(pos or neg)
    assert 100 < reviews < 200  # about half of the documents are reviews
    assert set(ZH.POSITIVE) | set(ZH.NEGATIVE) <= set("".join(docs))


@pytest.mark.parametrize("seen", [True, False])
def test_chinese_labelled_sentences_split_the_adjectives_and_carry_no_cue(seen):
    rows = ZH.sentiment_sentences(200, seen=seen, seed=1)
    assert [y for _, y in rows] == [i % 2 for i in range(200)]  # balanced, 1 = positive
    k = ZH.SEEN_WORDS
    allowed = {
        1: set(ZH.POSITIVE[:k] if seen else ZH.POSITIVE[k:]),
        0: set(ZH.NEGATIVE[:k] if seen else ZH.NEGATIVE[k:]),
    }
    for text, label in rows:
        adjectives = set(text) & (set(ZH.POSITIVE) | set(ZH.NEGATIVE))
        assert len(adjectives) == 1 and adjectives <= allowed[label], (text, label)
        for cue in ("爱", "恨", "喜欢", "讨厌", "推荐", "别碰", "再来", "不来"):
            assert cue not in text, f"a polar cue leaked: {text}"


# ------------------------------------------------------------------ instruction tasks (11)
def test_hand_derived_chinese_examples():
    """Worked by hand: 37 + 45 = 82; three items; 马 鸟 鱼 are 馬 鳥 魚 in traditional characters."""
    by_task = {ex.task: ex for ex in make_instructions(50, "train", instructions_zh.TASKS)}
    assert set(by_task) == set(instructions_zh.TASKS)
    rng = random.Random(0)
    assert instructions_zh.TRADITIONAL["马"] == "馬" and instructions_zh.TRADITIONAL["龙"] == "龍"
    ex = Example("繁体", "写成繁体字：马、鸟、鱼", "馬、鳥、魚")
    assert is_correct(ex, "馬、鳥、魚") and not is_correct(ex, "马、鸟、鱼")
    assert instructions_zh.wrong_answer(ex, rng) == "马、鸟、鱼"
    assert (
        instructions_zh.wrong_answer(Example("倒序", "把顺序倒过来：马、鸟", "鸟、马"), rng)
        == "马、鸟"
    )


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_chinese_answer_is_right(seed):
    """An independent solver per task, parsing the prompt."""
    for ex in make_instructions(100, "train", instructions_zh.TASKS, seed=seed):
        body = ex.prompt.split("：", 1)[-1]
        if ex.task == "加法":
            a, b = ex.prompt.removesuffix("等于多少？").split("加")
            assert int(ex.answer) == int(a) + int(b)
        elif ex.task == "倒序":
            assert ex.answer.split("、") == body.split("、")[::-1]
        elif ex.task == "计数":
            assert int(ex.answer) == body.count("、") + 1
        elif ex.task == "排序":
            assert [int(x) for x in ex.answer.split()] == sorted(int(x) for x in body.split())
        else:  # 繁体: item by item, same order, every item changed
            pairs = list(zip(body.split("、"), ex.answer.split("、"), strict=True))
            assert all(s != t for s, t in pairs), ex


def test_the_traditional_forms_are_traditional():
    """An independent check through two encodings: GB2312 holds simplified characters and Big5
    traditional ones, so each simplified character must encode in GB2312 but not in Big5, and each
    traditional one the other way round."""

    def encodes(ch, codec):
        try:
            ch.encode(codec)
            return True
        except UnicodeEncodeError:
            return False

    for simplified, traditional in instructions_zh.TRADITIONAL.items():
        assert encodes(simplified, "gb2312") and not encodes(simplified, "big5"), simplified
        assert encodes(traditional, "big5") and not encodes(traditional, "gb2312"), traditional


def test_chinese_splits_are_disjoint_and_preferences_are_wrong():
    train = make_instructions(300, "train", instructions_zh.TASKS)
    test = make_instructions(100, "test", instructions_zh.TASKS)
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    prefs = make_preferences(60, "train", tasks=instructions_zh.TASKS)
    assert len(prefs) > 50
    for ex, chosen, rejected in prefs:
        assert is_correct(ex, chosen) and not is_correct(ex, rejected), (ex, rejected)


def test_task_family_says_the_language_and_refuses_a_mix():
    assert task_family(("count", "upper")) == instructions.TASKS
    assert task_family(("计数",)) == instructions_zh.TASKS
    with pytest.raises(ValueError, match="mix languages"):
        task_family(("count", "计数"))
    with pytest.raises(ValueError, match="unknown task"):
        make_instructions(2, "train", ("繁體",))


def test_the_chat_pipeline_config_in_chinese():
    for size in ("smoke", "full"):
        zh = ChatPipelineConfig.for_size(size, language="zh")
        en = ChatPipelineConfig.for_size(size, language="en")
        assert task_family(tuple(zh.tasks)) == instructions_zh.TASKS
        assert set(zh.peft_tasks) <= set(zh.tasks)
        assert task_family(tuple(en.tasks)) == instructions.TASKS  # English stays English
    smoke = ChatPipelineConfig.for_size("smoke", language="zh")
    assert smoke.tasks == ("计数", "繁体")  # the counterparts of the English ("count", "upper")
    pairs = preference_pairs(smoke, "test")
    assert len(pairs) == smoke.n_pref_test and {ex.task for ex, _, _ in pairs} <= set(smoke.tasks)
