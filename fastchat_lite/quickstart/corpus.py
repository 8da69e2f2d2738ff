"""Hand-written answers for the quickstart's sample ChatGPT-UI dump, in Markdown.

:mod:`fastchat_lite.quickstart.data` renders each answer to the HTML the ChatGPT web UI saved
(code blocks with a "Copy code" bar, lists, tables, entities), so ``data clean`` has real work
to do. Questions come with a few phrasings each; parametric items (conversions, capitals,
small functions in several languages) are generated there, so every answer stays correct.
"""

from __future__ import annotations

# (question phrasings, markdown answer, optional follow-ups as (question, answer))
QA = list[tuple[tuple[str, ...], str, tuple[tuple[str, str], ...]]]

CODE_QA: QA = [
    (
        (
            "How do I read a file line by line in Python?",
            "what's the best way to read a text file line by line in python",
        ),
        "Iterate over the file object: it reads one line at a time, so even a large file "
        "never sits in memory whole.\n\n"
        '```python\nwith open("notes.txt", encoding="utf-8") as handle:\n'
        "    for line in handle:\n        print(line.rstrip())\n```\n\n"
        "The `with` block closes the file for you, even if an exception is raised.",
        (
            (
                "And how do I count the lines?",
                "Use `sum` over the file object:\n\n"
                '```python\nwith open("notes.txt", encoding="utf-8") as handle:\n'
                "    count = sum(1 for _ in handle)\nprint(count)\n```",
            ),
        ),
    ),
    (
        ("How can I remove duplicates from a list but keep the order?",),
        "A `dict` keeps insertion order (Python 3.7+), so `dict.fromkeys` does it in one line:"
        "\n\n```python\nitems = [3, 1, 3, 2, 1]\nunique = list(dict.fromkeys(items))\n"
        "print(unique)  # [3, 1, 2]\n```\n\n"
        "A `set` would also remove duplicates, but it does **not** keep the order.",
        (),
    ),
    (
        ("Explain list comprehensions with an example.", "what is a list comprehension?"),
        "A list comprehension builds a list from an iterable in one expression:\n\n"
        "```python\nsquares = [n * n for n in range(10) if n % 2 == 0]\n"
        "print(squares)  # [0, 4, 16, 36, 64]\n```\n\n"
        "It reads as: *for each* `n` in `range(10)`, *if* `n` is even, keep `n * n`. "
        "It is usually faster and shorter than an explicit `for` loop with `append`.",
        (
            (
                "Can I do the same for a dictionary?",
                "Yes, with a dict comprehension:\n\n"
                '```python\nlengths = {word: len(word) for word in ["apple", "kiwi"]}\n'
                "print(lengths)  # {'apple': 5, 'kiwi': 4}\n```",
            ),
        ),
    ),
    (
        ("How do I make an HTTP GET request in JavaScript?",),
        "Use the built-in `fetch` API, which returns a promise:\n\n"
        "```javascript\nasync function getUser(id) {\n"
        "  const response = await fetch(`https://api.example.com/users/${id}`);\n"
        "  if (!response.ok) {\n    throw new Error(`HTTP ${response.status}`);\n  }\n"
        "  return response.json();\n}\n```\n\n"
        "Note that `fetch` only rejects on network errors, so check `response.ok` yourself.",
        (),
    ),
    (
        ("Write a SQL query that finds the 5 customers who spent the most.",),
        "Assuming an `orders` table with `customer_id` and `amount` columns:\n\n"
        "```sql\nSELECT customer_id, SUM(amount) AS total_spent\nFROM orders\n"
        "GROUP BY customer_id\nORDER BY total_spent DESC\nLIMIT 5;\n```\n\n"
        "If you also need the names, `JOIN` the `customers` table on `customer_id`.",
        (),
    ),
    (
        ("How do I undo my last git commit but keep the changes?",),
        "Run:\n\n```bash\ngit reset --soft HEAD~1\n```\n\n"
        "- `--soft` keeps your changes staged.\n"
        "- `--mixed` (the default) keeps them but unstages them.\n"
        "- `--hard` throws them away, so be careful with it.\n\n"
        "If you already pushed the commit, prefer `git revert HEAD`, which adds a new commit "
        "instead of rewriting history.",
        (),
    ),
    (
        ("How do I find the largest files in a directory on Linux?",),
        "Combine `du` and `sort`:\n\n```bash\ndu -ah /var/log | sort -rh | head -n 10\n```\n\n"
        "`-a` lists files as well as directories, `-h` prints human-readable sizes and "
        "`sort -rh` sorts those sizes from largest to smallest.",
        (),
    ),
    (
        ("What is the difference between a process and a thread?",),
        "| | Process | Thread |\n| --- | --- | --- |\n"
        "| Memory | its own address space | shares the process's memory |\n"
        "| Creation cost | high | low |\n| Communication | pipes, sockets, files | "
        "shared variables (with locks) |\n| A crash affects | only itself | the whole process |"
        "\n\nIn Python, threads are good for waiting on I/O, while processes "
        "(`multiprocessing`) are better for CPU-heavy work because of the GIL.",
        (),
    ),
    (
        ("Why does 0.1 + 0.2 not equal 0.3 in Python?",),
        "Floats are stored in binary, and 0.1 has no exact binary representation, so a tiny "
        "rounding error appears:\n\n```python\n>>> 0.1 + 0.2\n0.30000000000000004\n"
        ">>> import math\n>>> math.isclose(0.1 + 0.2, 0.3)\nTrue\n```\n\n"
        "Compare floats with `math.isclose`, or use `decimal.Decimal` for money.",
        (),
    ),
    (
        ("How do I parse JSON in Python?",),
        "Use the standard `json` module:\n\n```python\nimport json\n\n"
        'data = json.loads(\'{"name": "Ada", "languages": ["en", "fr"]}\')\n'
        'print(data["name"])  # Ada\n\nwith open("config.json", encoding="utf-8") as f:\n'
        "    config = json.load(f)\n```\n\n"
        "`loads` parses a string and `load` reads from a file; `dumps` and `dump` go the "
        "other way.",
        (),
    ),
    (
        ("Can you explain what a Python decorator is?",),
        "A decorator is a function that takes a function and returns a new one, usually to "
        "add behaviour around it:\n\n```python\nimport time\n\n\ndef timed(func):\n"
        "    def wrapper(*args, **kwargs):\n        start = time.perf_counter()\n"
        "        result = func(*args, **kwargs)\n"
        '        print(f"{func.__name__} took {time.perf_counter() - start:.3f}s")\n'
        "        return result\n    return wrapper\n\n\n@timed\ndef slow_add(a, b):\n"
        "    time.sleep(0.1)\n    return a + b\n```\n\n"
        "`@timed` above the definition is the same as `slow_add = timed(slow_add)`.",
        (),
    ),
    (
        ("How do I center a div with CSS?",),
        "Flexbox is the simplest way:\n\n```css\n.parent {\n  display: flex;\n"
        "  justify-content: center; /* horizontal */\n  align-items: center;     /* vertical */\n"
        "  min-height: 100vh;\n}\n```\n\n"
        "With CSS grid, `display: grid; place-items: center;` does the same.",
        (),
    ),
]

GENERAL_QA: QA = [
    (
        ("Give me some tips to sleep better.", "how can i improve my sleep?"),
        "Here are a few habits that help most people:\n\n"
        "1. Go to bed and wake up at the same time every day, even on weekends.\n"
        "2. Keep the bedroom dark, quiet and cool (around 18 °C).\n"
        "3. Avoid caffeine after 2 p.m. and heavy meals late in the evening.\n"
        "4. Put screens away 30–60 minutes before bed.\n"
        "5. Get daylight and some exercise during the day.\n\n"
        "If you still sleep badly for weeks, it is worth talking to a doctor.",
        (),
    ),
    (
        ("What are the planets of the solar system?",),
        "From the Sun outwards:\n\n| # | Planet | Type | Moons (approx.) |\n"
        "| --- | --- | --- | --- |\n| 1 | Mercury | rocky | 0 |\n| 2 | Venus | rocky | 0 |\n"
        "| 3 | Earth | rocky | 1 |\n| 4 | Mars | rocky | 2 |\n| 5 | Jupiter | gas giant | 95 |\n"
        "| 6 | Saturn | gas giant | 146 |\n| 7 | Uranus | ice giant | 28 |\n"
        "| 8 | Neptune | ice giant | 16 |\n\nPluto was reclassified as a dwarf planet in 2006.",
        (
            (
                "Which one is the hottest?",
                "**Venus**, not Mercury: its thick CO₂ atmosphere "
                "traps heat, so its surface is about 465 °C.",
            ),
        ),
    ),
    (
        ("Write a short poem about the sea.",),
        "The tide comes in with silver hands,\nit writes its name across the sands;\n"
        "the gulls reply, the wind agrees,\nand carries salt through sleeping trees.\n\n"
        "The tide goes out, the page is clean —\nas if the sea had never been.",
        (),
    ),
    (
        ("How do I make a simple tomato pasta sauce?",),
        "**Ingredients** (2 servings):\n\n- 1 can (400 g) of chopped tomatoes\n"
        "- 2 cloves of garlic\n- 2 tbsp olive oil\n- a pinch of salt & pepper\n"
        "- a few basil leaves\n\n**Steps:**\n\n1. Gently fry the sliced garlic in the oil.\n"
        "2. Add the tomatoes, salt and pepper; simmer for 15 minutes.\n"
        "3. Tear in the basil and toss with freshly cooked pasta.\n\nBuon appetito! 🍝",
        (),
    ),
    (
        ("What is the difference between weather and climate?",),
        "**Weather** is what the atmosphere does over hours or days: rain tomorrow, 25 °C "
        "this afternoon. **Climate** is the average of the weather over decades in a region."
        "\n\nA handy way to remember it: climate is what you expect, weather is what you get.",
        (),
    ),
    (
        ("Explain photosynthesis simply.", "can you explain photosynthesis to a 10 year old"),
        "Plants make their own food from sunlight. Their leaves take in:\n\n"
        "- **light** from the Sun,\n- **water** from the roots,\n"
        "- **carbon dioxide** from the air.\n\n"
        "With these they make sugar to grow, and they release oxygen — the oxygen we breathe. "
        "🌱☀️",
        (),
    ),
    (
        ("How should I prepare for a job interview?",),
        "1. **Research the company**: its products, customers and recent news.\n"
        "2. **Re-read the job description** and match each requirement to an example from "
        "your experience.\n3. **Prepare stories** using the STAR method (Situation, Task, "
        "Action, Result).\n4. **Prepare questions** to ask them, e.g. what success looks like "
        "in the first 90 days.\n5. **Practise** out loud, ideally with a friend.\n\n"
        "Good luck — you've got this! 💪",
        (),
    ),
    (
        ("Compare renting and buying a home.",),
        "| | Renting | Buying |\n| --- | --- | --- |\n| Up-front cost | deposit only | "
        "down payment, fees, taxes |\n| Flexibility | high: easy to move | low |\n"
        "| Repairs | landlord's job | your job |\n| Builds equity | no | yes |\n\n"
        "Buying usually pays off only if you stay five years or more.",
        (),
    ),
    (
        ("Summarize the causes of World War I.",),
        "Historians often sum them up as **MAIN**:\n\n- **Militarism**: an arms race, "
        "especially between Britain and Germany.\n- **Alliances**: two blocs (the Triple "
        "Entente and the Triple Alliance) that turned a local conflict into a world war.\n"
        "- **Imperialism**: competition for colonies and markets.\n- **Nationalism**: "
        "especially in the Balkans.\n\nThe spark was the assassination of Archduke Franz "
        "Ferdinand in Sarajevo on 28 June 1914.",
        (),
    ),
    (
        ("What does HTML stand for, and what are <div> and <span>?",),
        "HTML stands for *HyperText Markup Language*.\n\n- `<div>` is a **block** container: "
        "it starts on a new line and takes the full width.\n- `<span>` is an **inline** "
        'container: it flows inside text.\n\nFor example `<p>Price: <span class="red">5 '
        "&euro;</span></p>` colours only the price.",
        (),
    ),
    (
        ("I feel stressed about exams. Any advice?",),
        "That's a very common feeling, and it's a sign you care. 💙 A few things that help:"
        "\n\n- Break revision into 25-minute blocks with 5-minute breaks (Pomodoro).\n"
        "- Test yourself instead of re-reading: past papers are gold.\n"
        "- Sleep: memories are consolidated at night.\n- Move a bit every day, even a walk."
        "\n\nAnd remember: one exam does not define you.",
        (),
    ),
    (
        ("Translate 'Good morning, how are you?' into French, Spanish and German.",),
        "| Language | Translation |\n| --- | --- |\n"
        "| French | Bonjour, comment allez-vous ? |\n| Spanish | Buenos días, ¿cómo está? |\n"
        "| German | Guten Morgen, wie geht es Ihnen? |\n\n"
        "These are the polite forms; with friends you would say *comment ça va ?*, "
        "*¿cómo estás?* and *wie geht's?*",
        (),
    ),
]

CHINESE_QA: QA = [
    (
        ("请介绍一下长城。",),
        "长城是中国古代修建的军事防御工程，总长度超过两万千米。\n\n"
        "- 最早的部分修建于春秋战国时期；\n- 现在看到的大部分是**明朝**修建的；\n"
        "- 1987 年被列入世界文化遗产。\n\n著名的景点有八达岭、慕田峪和山海关。🏯",
        (),
    ),
    (
        ("用 Python 写一个计算阶乘的函数。",),
        "可以用循环实现：\n\n```python\ndef factorial(n: int) -> int:\n"
        '    """返回 n 的阶乘（n >= 0）。"""\n    result = 1\n'
        "    for i in range(2, n + 1):\n        result *= i\n    return result\n\n\n"
        "print(factorial(5))  # 120\n```\n\n也可以直接使用标准库的 `math.factorial`。",
        (),
    ),
    (
        ("如何提高学习效率？", "怎样才能学习更高效"),
        "几个实用的方法：\n\n1. **设定明确目标**：每次学习前写下要完成的内容。\n"
        "2. **番茄工作法**：学习 25 分钟，休息 5 分钟。\n3. **主动回忆**：合上书，"
        "试着复述刚学的内容。\n4. **保证睡眠**：睡眠有助于巩固记忆。\n\n加油！📚",
        (),
    ),
    (
        ("北京和上海有什么不同？",),
        "| | 北京 | 上海 |\n| --- | --- | --- |\n| 地位 | 首都，政治文化中心 | "
        "经济金融中心 |\n| 气候 | 四季分明，冬季干冷 | 湿润，冬季湿冷 |\n"
        "| 代表景点 | 故宫、天坛 | 外滩、东方明珠 |\n\n两座城市各有特色，都值得一去。",
        (),
    ),
]

FOLLOW_UPS: tuple[tuple[str, str], ...] = (
    ("Thanks!", "You're welcome! Let me know if you have any other questions. 😊"),
    ("thank you, that helps a lot", "Glad it helped! Feel free to ask anything else."),
    (
        "Can you make it shorter?",
        "Sure — in one sentence: the key idea is in the first "
        "paragraph above; the rest is detail you can skip.",
    ),
    ("谢谢！", "不客气！如果还有其他问题，随时问我。"),
)

TOPICS_SMALL_TALK: tuple[tuple[str, str], ...] = (
    ("Hi!", "Hello! How can I help you today?"),
    ("Good morning", "Good morning! ☀️ What can I do for you?"),
    ("Tell me a joke.", "Why do programmers prefer dark mode? Because light attracts bugs! 🐛"),
    (
        "What's a good book to read?",
        "It depends on your taste, but *Sapiens* by Yuval Noah "
        "Harari is a popular, readable overview of human history.",
    ),
)
