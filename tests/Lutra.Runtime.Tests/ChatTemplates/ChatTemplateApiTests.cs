using Lutra.Runtime.ChatTemplates;

namespace Lutra.Runtime.Tests.ChatTemplates;

public sealed class ChatTemplateApiTests
{
    [Fact]
    public void Tool_calls_reach_the_template_in_the_hugging_face_shape()
    {
        const string template =
            "{% for m in messages %}{{ m.role }}:{% if m.tool_calls %}{% for c in m.tool_calls %}"
            + "{{ c.id }} {{ c.type }} {{ c.function.name }} {{ c.function.arguments | tojson }} {{ c.function.arguments.city }}"
            + "{% endfor %}{% else %}{{ m.content }}{% endif %}{% if m.tool_call_id is defined %}<{{ m.tool_call_id }}>{% endif %};{% endfor %}";
        var messages = new[]
        {
            new ChatTemplateMessage("assistant", null) { ToolCalls = [new ChatTemplateToolCall("call_1", "weather", "{\"city\": \"Oslo\"}")] },
            new ChatTemplateMessage("tool", "{\"temp\": 3}") { ToolCallId = "call_1" },
        };
        var text = ChatTemplate.Parse(template).Render(messages, false, "", "");
        Assert.Equal("assistant:call_1 function weather {\"city\": \"Oslo\"} Oslo;tool:{\"temp\": 3}<call_1>;", text);
    }

    [Fact]
    public void Non_object_tool_arguments_stay_strings()
    {
        var messages = new[] { new ChatTemplateMessage("assistant", null) { ToolCalls = [new ChatTemplateToolCall("1", "f", "not json")] } };
        var text = ChatTemplate.Parse("{{ messages[0].tool_calls[0].function.arguments is string }}").Render(messages, false, "", "");
        Assert.Equal("True", text);
    }

    [Fact]
    public void Extra_variables_accept_plain_dotnet_values()
    {
        var variables = new Dictionary<string, object?>
        {
            ["count"] = 3,
            ["ratio"] = 0.5f,
            ["flags"] = new List<object?> { true, null, "x" },
            ["map"] = new Dictionary<string, object?> { ["k"] = new[] { 1, 2 } },
        };
        var text = ChatTemplate.Parse("{{ count + 1 }} {{ ratio }} {{ flags }} {{ map | tojson }}").Render(variables);
        Assert.Equal("4 0.5 [True, None, 'x'] {\"k\": [1, 2]}", text);
    }

    [Fact]
    public void Parsed_template_renders_many_times_independently()
    {
        var template = ChatTemplate.Parse("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}");
        var one = template.Render([new ChatTemplateMessage("user", "a")], false, "", "");
        var two = template.Render([new ChatTemplateMessage("user", "a"), new ChatTemplateMessage("user", "b")], false, "", "");
        Assert.Equal(("1", "2"), (one, two));
    }
}
