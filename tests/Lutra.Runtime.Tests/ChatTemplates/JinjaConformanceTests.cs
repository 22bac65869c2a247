using System.Text.Json;
using Lutra.Runtime.ChatTemplates;

namespace Lutra.Runtime.Tests.ChatTemplates;

/// <summary>
/// Small templates covering whitespace control, loops, filters and expressions. Each expected string is what
/// Python jinja2 renders for the same template in transformers' environment
/// (<c>ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)</c>, loopcontrols, json.dumps
/// <c>tojson</c>, <c>strftime_now</c> fixed at 2025-02-20 12:00:00), with the variables built in <see cref="Render"/>.
/// </summary>
public sealed class JinjaConformanceTests
{
    private static readonly ChatTemplateMessage[] Messages =
    [
        new("system", "Be brief."),
        new("user", "Hello"),
        new("assistant", "Hi!"),
        new("user", "Bye"),
    ];

    private static string Render(string template)
    {
        using var data = JsonDocument.Parse(DataJson);
        var extra = new Dictionary<string, object?> { ["data"] = data.RootElement };
        return ChatTemplate.Parse(template).Render(Messages, addGenerationPrompt: true, "<s>", "</s>", new DateTime(2025, 2, 20, 12, 0, 0), extra);
    }

    [Theory]
    [MemberData(nameof(Whitespace))]
    public void Whitespace_control_matches_jinja2(string template, string expected) => Assert.Equal(expected, Render(template));

    [Theory]
    [MemberData(nameof(Loops))]
    public void Loops_match_jinja2(string template, string expected) => Assert.Equal(expected, Render(template));

    [Theory]
    [MemberData(nameof(Filters))]
    public void Filters_match_jinja2(string template, string expected) => Assert.Equal(expected, Render(template));

    [Theory]
    [MemberData(nameof(Expressions))]
    public void Expressions_match_jinja2(string template, string expected) => Assert.Equal(expected, Render(template));

    // Expected strings were produced by Python jinja2 3.1.6 in transformers' environment (see the class comment).
    public static TheoryData<string, string> Whitespace => new()
    {
        { "a\n  {% if true %}\n  b\n  {% endif %}\n c", "a\n  b\n c" },
        { "  {%- if true -%}  x  {%- endif -%}  ", "x" },
        { "x\n  {%- if true %}\n  y\n  {%+ endif %}\nz", "x  y\n  z" },
        { "a {%+ if true %}b{% endif %}\n  {%+ if true %}c{% endif %}", "a b  c" },
        { "line\n  {# c #}  after\n", "line\n  after" },
        { "x  {#- c -#}  y", "xy" },
        { "{{ 'a' }}\n{{ 'b' }}\n", "a\nb" },
        { "   {{- 'a' -}}   \n   {{ 'b' }}   ", "ab   " },
        { "{% if true %}\r\nwin\r\n{% endif %}\r\n", "win\n" },
        { "{{ 42 }}\n\n", "42\n" },
        { "  {% if true %}\n    {% if true %}\n  deep\n    {% endif %}\n  {% endif %}\n", "  deep\n" },
        { "{% for i in range(2) -%}\n  {{ i }}\n{%- endfor %}", "01" },
        { "{% raw %}{{ not evaluated }}{% endraw %}", "{{ not evaluated }}" },
    };

    public static TheoryData<string, string> Loops => new()
    {
        { "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}|{% endfor %}", "1/4:43TrueFalse|2/4:32FalseFalse|3/4:21FalseFalse|4/4:10FalseTrue|" },
        { "{% for m in messages if m.role != 'system' %}{{ loop.index0 }}{{ m.role }} {% else %}none{% endfor %}", "0user 1assistant 2user " },
        { "{% for m in data.empty %}x{% else %}empty{% endfor %}", "empty" },
        { "{% for k, v in data.nested.a.b[2].items() %}{{ k }}={{ v }}{% endfor %}", "c=deep" },
        { "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '^' }}>{{ loop.nextitem.role if loop.nextitem is defined else '$' }} {% endfor %}", "^>user system>assistant user>user assistant>$ " },
        { "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", "0134" },
        { "{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}", "aba" },
        { "{% set x = 1 %}{% for i in range(3) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}", "2221" },
        { "{% set ns = namespace(total=0) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}", "6" },
        { "{% for a, b in [[1, 2], [3, 4]] %}{{ a * b }},{% endfor %}", "2,12," },
    };

    public static TheoryData<string, string> Filters => new()
    {
        { "{{ data.s | trim }}|{{ data.s | upper }}|{{ data.s | lower }}|{{ 'hELLO wORLD' | capitalize }}|{{ 'hello-world foo' | title }}", "Hi There|  HI THERE  |  hi there  |Hello world|Hello-World Foo" },
        { "{{ messages | length }} {{ data.s | length }} {{ messages | first | tojson }} {{ (messages | last).content }}", "4 12 {\"role\": \"system\", \"content\": \"Be brief.\"} Bye" },
        { "{{ data.tools | tojson }}", "[{\"name\": \"get_weather\", \"args\": {\"city\": \"Paris\", \"days\": 3}}]" },
        { "{{ data.tools | tojson(indent=2) }}", "[\n  {\n    \"name\": \"get_weather\",\n    \"args\": {\n      \"city\": \"Paris\",\n      \"days\": 3\n    }\n  }\n]" },
        { "{{ data.nested | tojson(indent=4, sort_keys=true) }}", "{\n    \"a\": {\n        \"b\": [\n            1,\n            2,\n            {\n                \"c\": \"deep\"\n            }\n        ]\n    }\n}" },
        { "{{ {'b': 1, 'a': [1, 2]} | tojson(separators=(',', ':')) }}|{{ 'é\"\\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}", "{\"b\":1,\"a\":[1,2]}|\"é\\\"\\n\"|\"\\u00e9\"" },
        { "{{ 'line1\nline2\n\nline4' | indent(2) }}|{{ 'a\nb' | indent(4, first=true) }}|{{ 'a\n\nb' | indent(2, blank=true) }}", "line1\n  line2\n\n  line4|    a\n    b|a\n  \n  b" },
        { "{{ messages | map(attribute='role') | join(', ') }}|{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}", "system, user, assistant, user|['Hello', 'Bye']" },
        { "{{ messages | rejectattr('role', 'eq', 'user') | list | length }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ ['a', 'b'] | reject('equalto', 'a') | join }}", "2|[1, 3]|b" },
        { "{{ undefined_var | default('d') }}|{{ '' | default('e', true) }}|{{ none | default('n') }}", "d|e|None" },
        { "{{ data.nested.a | items | list }}|{{ 'ab' | list }}|{{ data.n | string }}{{ none | string }}", "[('b', [1, 2, {'c': 'deep'}])]|['a', 'b']|3None" },
        { "{{ '5' | int + 1 }} {{ 'x' | int }} {{ '2.5' | float }} {{ 3 | float }} {{ -3 | abs }} {{ 2.567 | round(2) }}", "6 0 2.5 3.0 3 2.57" },
        { "{{ 'a<b&\"c\"' | e }}|{{ 'banana' | replace('a', 'o') }}|{{ [3, 1, 2] | sort | list }}|{{ [1, 2, 3] | sum }}|{{ [3, 1, 2] | max }}", "a&lt;b&amp;&#34;c&#34;|bonono|[1, 2, 3]|6|3" },
        { "{{ [1, 2, 3] | reverse | list }}{{ 'abc' | reverse }}|{{ ['b', 'A', 'a', 'B'] | unique | list }}", "[3, 2, 1]cba|['b', 'A']" },
        { "{% set s %}  captured {{ 1 + 1 }}  {% endset %}[{{ s }}]{% filter upper %}shout {{ 'x' }}{% endfilter %}", "[  captured 2  ]SHOUT X" },
    };

    public static TheoryData<string, string> Expressions => new()
    {
        { "{{ [1, 2.5, 'a', none, true, {'x': (1,)}] }}", "[1, 2.5, 'a', None, True, {'x': (1,)}]" },
        { "{{ 1 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 100.0 }} {{ 1e16 }}", "0.5 3 -4 2 1024 1e+20 1.5e-07 0.30000000000000004 100.0 1e+16" },
        { "{{ 'abc'[1:] }} {{ 'abc'[::-1] }} {{ [1, 2, 3, 4][1:3] }} {{ [1, 2, 3][-1] }} {{ 'héllo'[1] }}", "bc cba [2, 3] 3 é" },
        { "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 3 > 2 > 1 }} {{ 1 < 2 < 1 }}", "True True True True True False" },
        { "{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'role' in messages[0] }} {{ 'x' not in messages[0] }}", "True True True True" },
        { "{{ not 1 }} {{ 1 and 2 }} {{ 0 or 'b' }} {{ none or '' }}|{{ 'x' if false }}|{{ 1 if 0 else 2 if 0 else 3 }}", "False 2 b ||3" },
        { "{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 3 - 1.5 }}", "a1NoneTrue ababab [1, 1] [1, 2] 1.5" },
        { "{{ messages[0] }} {{ {'k': \"it's\"} }} {{ [\"a'b\", 'c\"d'] }}", "{'role': 'system', 'content': 'Be brief.'} {'k': \"it's\"} [\"a'b\", 'c\"d']" },
        { "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'x</think>y'.split('</think>')[-1] }}", "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] y" },
        { "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('z', 'b')) }}|{{ 'hello world'.title() }}", "x|hi|TrueTrue|Hello World" },
        { "{{ data.nested.a.b[2].c }} {{ data['nested']['a']['b'][0] }} {{ data.nested.get('zz', 'dflt') }} {{ data.nested.keys() | list }}", "deep 1 dflt ['a']" },
        { "{{ none is none }} {{ 1 is number }} {{ 'a' is string }} {{ {} is mapping }} {{ 'a' is iterable }} {{ 3 is integer }} {{ 4 is divisibleby 2 }} {{ x is not defined }}", "True True True True True True True True" },
        { "{% macro f(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, 2) }}{{ f(b=3, a=4) }}", "[1B][12][43]" },
        { "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}", "321" },
        { "{% if true %}{% set y = 5 %}{% endif %}{{ y }} {% set a, b = 1, 2 %}{{ a }}{{ b }}", "5 12" },
        { "{{ strftime_now('%d %b %Y %H:%M:%S %A %B %j %p %y %m %-d') }}", "20 Feb 2025 12:00:00 Thursday February 051 PM 25 02 20" },
        { "{{ undefined_var }}|{{ messages[0].nope }}|{{ messages[0].nope is defined }}|{{ undefined_var | length }}", "||False|0" },
        { "{{ 'A\\tB\\u00e9\\x41' }} {{ \"dq 'inner'\" ~ 'sq \"inner\"' }}", "A\tBéA dq 'inner'sq \"inner\"" },
    };

    private const string DataJson = "{\"tools\": [{\"name\": \"get_weather\", \"args\": {\"city\": \"Paris\", \"days\": 3}}], \"n\": 3, \"f\": 2.5, \"s\": \"  Hi There  \", \"empty\": [], \"nested\": {\"a\": {\"b\": [1, 2, {\"c\": \"deep\"}]}}}";
}
