using System.Text;
using System.Text.Json;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// A parsed Hugging Face chat template (the GGUF <c>tokenizer.chat_template</c> string), rendered the way
/// transformers and llama.cpp render it with jinja2: <c>trim_blocks</c>, <c>lstrip_blocks</c>, no kept
/// trailing newline, loop controls, <c>raise_exception</c>, a <c>json.dumps</c>-style <c>tojson</c> and
/// <c>strftime_now</c>. Only the Jinja subset chat templates use is supported; anything else fails with a
/// <see cref="ChatTemplateException"/> naming the construct and its line:column.
/// </summary>
public sealed class ChatTemplate
{
    private readonly IReadOnlyList<Node> _nodes;

    private ChatTemplate(IReadOnlyList<Node> nodes) => _nodes = nodes;

    /// <exception cref="ChatTemplateException">The template has a syntax error or an unsupported construct.</exception>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(TemplateParser.Parse(source));
    }

    /// <summary>
    /// Renders a conversation. Variables are <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>,
    /// <c>eos_token</c>, plus <paramref name="extraVariables"/> (e.g. <c>tools</c>), which may hold strings,
    /// numbers, booleans, null, lists, dictionaries and <see cref="JsonElement"/>s.
    /// </summary>
    /// <param name="now">The time <c>strftime_now</c> reports; the local clock when null.</param>
    /// <exception cref="ChatTemplateException">Rendering failed, including the template's own <c>raise_exception</c>.</exception>
    public string Render(
        IReadOnlyList<ChatTemplateMessage> messages,
        bool addGenerationPrompt,
        string bosToken,
        string eosToken,
        DateTime? now = null,
        IReadOnlyDictionary<string, object?>? extraVariables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (extraVariables is not null)
        {
            foreach (var (name, value) in extraVariables)
                variables[name] = value;
        }
        variables["messages"] = new TemplateList(messages.Select(m => (object?)m.ToTemplateValue()));
        variables["add_generation_prompt"] = addGenerationPrompt;
        variables["bos_token"] = bosToken;
        variables["eos_token"] = eosToken;
        return Render(variables, now);
    }

    /// <summary>Renders with exactly the given variables (converted as in the other overload).</summary>
    /// <exception cref="ChatTemplateException">Rendering failed.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables, DateTime? now = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var globals = new Scope(null);
        TemplateGlobals.AddTo(globals, now ?? DateTime.Now);
        var context = new Scope(globals);
        foreach (var (name, value) in variables)
            context.Set(name, TemplateJson.FromClr(value));
        var output = new StringBuilder();
        try
        {
            new TemplateInterpreter().Render(_nodes, context, output);
        }
        catch (TemplateRuntimeException e)
        {
            throw new ChatTemplateException(e.Message, e);
        }
        return output.ToString();
    }
}
