using Lutra.Gguf;
using Lutra.Runtime.ChatTemplates;
using Lutra.Runtime.Tokenization;

namespace Lutra.Runtime.Chat;

/// <summary>The one place that builds a model's chat-template renderer from <c>tokenizer.chat_template</c>.</summary>
public static class ChatTemplateSeam
{
    public const string TemplateKey = "tokenizer.chat_template";

    public static IChatPromptRenderer FromGguf(GgufMetadata metadata, ITextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var source = metadata.GetString(TemplateKey)
            ?? throw new NotSupportedException($"the model has no chat template ('{TemplateKey}' is missing)");
        return new TemplateRenderer(
            ChatTemplate.Parse(source),
            SpecialTokenText(metadata, "tokenizer.ggml.bos_token_id") ?? "",
            SpecialTokenText(metadata, "tokenizer.ggml.eos_token_id") ?? "");
    }

    /// <summary>The text of the token whose id metadata key <paramref name="idKey"/> names (e.g. the BOS token), or null.</summary>
    public static string? SpecialTokenText(GgufMetadata metadata, string idKey)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        var id = metadata.GetInteger(idKey);
        var tokens = metadata.GetArray<GgufString>("tokenizer.ggml.tokens");
        return id is { } i && tokens is not null && i >= 0 && i < tokens.Length ? tokens[i].ToString() : null;
    }

    private sealed class TemplateRenderer(ChatTemplate template, string bos, string eos) : IChatPromptRenderer
    {
        public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt) =>
            template.Render(messages.Select(m => new ChatTemplateMessage(m.Role, m.Content)).ToList(), addGenerationPrompt, bos, eos);
    }
}
