using System.Text.Json;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// One chat message as chat templates see it (a dict with <c>role</c>, <c>content</c> and, for tool use,
/// <c>tool_calls</c> / <c>tool_call_id</c>, following the Hugging Face conventions).
/// </summary>
public sealed record ChatTemplateMessage(string Role, string? Content)
{
    /// <summary>Tool calls made by an assistant message; rendered as <c>message.tool_calls</c>.</summary>
    public IReadOnlyList<ChatTemplateToolCall>? ToolCalls { get; init; }

    /// <summary>For a <c>tool</c> message: the id of the call it answers.</summary>
    public string? ToolCallId { get; init; }

    internal TemplateDict ToTemplateValue()
    {
        var dict = new TemplateDict
        {
            ["role"] = Role,
            ["content"] = Content,
        };
        if (ToolCalls is not null)
        {
            var calls = new TemplateList();
            foreach (var call in ToolCalls)
                calls.Add(call.ToTemplateValue());
            dict["tool_calls"] = calls;
        }
        if (ToolCallId is not null)
            dict["tool_call_id"] = ToolCallId;
        return dict;
    }
}

/// <summary>
/// A function call requested by the assistant. <see cref="Arguments"/> is JSON text; templates receive it as a
/// dict when it is a JSON object (the Hugging Face convention) and as the raw string otherwise.
/// </summary>
public sealed record ChatTemplateToolCall(string Id, string Name, string Arguments)
{
    internal TemplateDict ToTemplateValue() => new()
    {
        ["id"] = Id,
        ["type"] = "function",
        ["function"] = new TemplateDict
        {
            ["name"] = Name,
            ["arguments"] = ParseArguments(Arguments),
        },
    };

    private static object? ParseArguments(string arguments)
    {
        try
        {
            using var document = JsonDocument.Parse(arguments);
            return document.RootElement.ValueKind == JsonValueKind.Object ? TemplateJson.FromJson(document.RootElement) : arguments;
        }
        catch (JsonException)
        {
            return arguments;
        }
    }
}
