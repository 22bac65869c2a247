using Lutra.Runtime.ChatTemplates;

namespace Lutra.Runtime.Tests.ChatTemplates;

/// <summary>Bad or unsupported templates fail with a ChatTemplateException naming the construct and line:column.</summary>
public sealed class TemplateErrorTests
{
    private static ChatTemplateException RenderFails(string template) =>
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template).Render([new ChatTemplateMessage("user", "hi")], true, "<s>", "</s>"));

    [Theory]
    [InlineData("ok\n  {{ x | nosuchfilter }}", "unknown filter 'nosuchfilter' (at 2:10)")]
    [InlineData("{% set y = x is nosuchtest %}", "unknown test 'nosuchtest' (at 1:17)")]
    [InlineData("a\nb {% include 'other.jinja' %}", "unsupported tag 'include' (at 2:6)")]
    [InlineData("{% frobnicate %}", "unknown tag 'frobnicate' (at 1:4)")]
    [InlineData("{% for a in b %}{% endif %}", "unknown tag 'endif' (at 1:20)")]
    [InlineData("{% if true %}never closed", "unexpected end of template: missing '{% elif %}'")]
    [InlineData("{{ 'unterminated }}", "unterminated string literal (at 1:4)")]
    [InlineData("{{ 1 + }}", "unexpected '}}' (at 1:8)")]
    [InlineData("{% break %}", "'break' outside of a for loop (at 1:4)")]
    [InlineData("{{ a ? b }}", "unexpected character '?' in tag (at 1:6)")]
    [InlineData("x {{ 1", "unclosed tag '{{': missing '}}' (at 1:3)")]
    [InlineData("{% for x in y recursive %}{% endfor %}", "recursive for loops are not supported (at 1:15)")]
    public void Syntax_errors_name_the_construct_and_position(string template, string message)
    {
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Exception_exposes_line_and_column()
    {
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("one\ntwo {{ x | nosuch }}"));
        Assert.Equal((2, 12), (error.Line, error.Column));
    }

    [Fact]
    public void Deep_nesting_is_an_error_not_a_stack_overflow()
    {
        var template = "{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}";
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template));
        Assert.Contains("template nests deeper than", error.Message, StringComparison.Ordinal);
    }

    // As in jinja2: inside an if statement or inline if, an unknown filter or test only fails when it runs.
    [Theory]
    [InlineData("{% if false %}{{ x | nope }}{% endif %}ok", "ok")]
    [InlineData("{{ (x | nope) if false else 1 }}", "1")]
    [InlineData("{% if true %}{% elif x is nope %}{% endif %}ok", "ok")]
    public void Unknown_names_in_untaken_conditional_code_do_not_fail(string template, string expected) =>
        Assert.Equal(expected, ChatTemplate.Parse(template).Render([], false, "", ""));

    [Theory]
    [InlineData("{% if true %}{{ x | nope }}{% endif %}", "no filter named 'nope' (at 1:21)")]
    [InlineData("{% if x is nope %}{% endif %}", "no test named 'nope' (at 1:9)")]
    public void Unknown_names_in_taken_conditional_code_fail_when_run(string template, string message) =>
        Assert.Contains(message, RenderFails(template).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData("{{ nothing + 'x' }}", "'nothing' is undefined (at 1:12)")]
    [InlineData("{{ messages[0].nope.deeper }}", "'dict object' has no attribute 'nope' (at 1:20)")]
    [InlineData("line1\n{{ raise_exception('custom failure') }}", "custom failure (at 2:19)")]
    [InlineData("{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str (at 1:8)")]
    [InlineData("{{ 1 < 'a' }}", "'<' not supported between instances of 'int' and 'str'")]
    [InlineData("{% for x in none %}{% endfor %}", "'NoneType' object is not iterable (at 1:13)")]
    [InlineData("{{ undefined_thing | tojson }}", "Object of type Undefined is not JSON serializable")]
    [InlineData("{% set x = [1] %}{{ x.append(2) }}", "access to attribute 'append' of 'list' object is unsafe")]
    [InlineData("{% set v = 1 %}{% set v.attr = 2 %}", "cannot assign attribute 'attr' on non-namespace object 'v'")]
    [InlineData("{% set a, b = [1, 2, 3] %}", "too many values to unpack (expected 2, got 3)")]
    [InlineData("{{ range(100001) | length }}", "Range too big")]
    [InlineData("{{ 1 // 0 }}", "integer division or modulo by zero")]
    [InlineData("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}", "macro 'f' takes not more than 1 argument(s)")]
    [InlineData("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "maximum recursion depth exceeded")]
    [InlineData("{{ 'x' * 100000000 }}", "string result is too large")]
    public void Render_errors_name_the_problem_and_position(string template, string message)
    {
        var error = RenderFails(template);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
