"""The teacher's prompt: k example tasks, numbered, then a request for a batch of new ones.

Written for this project, in English and Chinese. Every task is shown as::

    ### Task 3
    Instruction: ...
    Input: <none>
    Output: ...

(``### 任务 3`` / ``指令：`` / ``输入：<无>`` / ``输出：`` in Chinese), the same shape the parser
reads back. In completion mode the prompt ends with the header and ``Instruction:`` of the
first new task, so a base model simply continues the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from data_prep.generate.tasks import Task


@dataclass(frozen=True)
class Labels:
    task: str
    instruction: str
    input: str
    output: str
    no_input: str
    colon: str


LABELS = {
    "en": Labels("Task", "Instruction", "Input", "Output", "<none>", ": "),
    "zh": Labels("任务", "指令", "输入", "输出", "<无>", "："),
}

_GUIDE_EN = """\
We are collecting tasks to teach a text-only AI assistant to follow instructions. Below are \
{k} example tasks. Write {n} new tasks, numbered {first} to {last}, in exactly the same format.

What makes a good batch:
- Many different kinds of task: open questions, explanations, writing and rewriting, \
classification, extraction, summaries, reasoning, arithmetic, code, advice, brainstorming.
- Different wording each time; do not start every instruction with the same verb and do not \
repeat or paraphrase the examples.
- Every task can be done with text alone: nothing that needs images, audio, video, maps, \
files, drawing, plotting, browsing or acting in the world.
- An instruction is one or two sentences in English, imperative or a question.
- Input holds the material the instruction works on (a passage, a list, a table, a code \
snippet), concrete and realistic. Write {no_input} when the instruction stands on its own; \
roughly half of the tasks should have an input.
- Output is a correct, complete answer a careful expert would give, under 200 words.
"""

_GUIDE_ZH = """\
我们正在收集任务，用来教一个只处理文字的 AI 助手按指令办事。下面有 {k} 个示例任务。\
请按完全相同的格式，写出 {n} 个新任务，编号从 {first} 到 {last}。

一批好任务的要求：
- 种类要多：开放式问答、解释说明、写作与改写、分类、信息抽取、摘要、推理、计算、编程、\
建议、头脑风暴等。
- 措辞要多样：不要每条指令都用同一个动词开头，不要重复或改写示例。
- 每个任务只靠文字就能完成：不需要图片、音频、视频、地图、文件、画图、绘制图表、上网\
或现实中的行动。
- 指令用中文写，一到两句话，可以是祈使句，也可以是问句。
- 输入是指令要处理的材料（一段文字、一个列表、一张表格、一段代码），要具体、真实。\
指令本身已经完整时，输入写 {no_input}；大约一半的任务应当有输入。
- 输出是细心的专家会给出的正确、完整的回答，不超过 300 字。
"""

_ASK = {
    "en": "Now write tasks {first} to {last}, each starting with its ### Task line.",
    "zh": "现在请写出任务 {first} 到 {last}，每个任务都以 ### 任务 这一行开头。",
}


def format_task(task: Task, number: int, lang: str) -> str:
    labels = LABELS[lang]
    return "\n".join(
        [
            f"### {labels.task} {number}",
            f"{labels.instruction}{labels.colon}{task.instruction}",
            f"{labels.input}{labels.colon}{task.input or labels.no_input}",
            f"{labels.output}{labels.colon}{task.output}",
        ]
    )


def build_prompt(examples: Sequence[Task], num_tasks: int, lang: str, mode: str) -> str:
    """The whole prompt; ``mode`` "completion" ends it where the first new task begins."""
    labels = LABELS[lang]
    k = len(examples)
    values = dict(k=k, n=num_tasks, first=k + 1, last=k + num_tasks, no_input=labels.no_input)
    guide = (_GUIDE_EN if lang == "en" else _GUIDE_ZH).format(**values)
    shown = "\n\n".join(format_task(task, i + 1, lang) for i, task in enumerate(examples))
    if mode == "completion":
        opening = f"### {labels.task} {k + 1}\n{labels.instruction}{labels.colon.rstrip()}"
        return f"{guide}\n{shown}\n\n{opening}"
    return f"{guide}\n{shown}\n\n{_ASK[lang].format(**values)}"


def completion_reply_prefix(first_number: int, lang: str) -> str:
    """What the completion prompt ended with: put back in front of the reply to parse it."""
    labels = LABELS[lang]
    return f"### {labels.task} {first_number}\n{labels.instruction}{labels.colon.rstrip()}"
