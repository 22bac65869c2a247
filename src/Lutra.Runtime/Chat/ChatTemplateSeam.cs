using Lutra.Gguf;
using Lutra.Runtime.Tokenization;

namespace Lutra.Runtime.Chat;

/// <summary>
/// The one place that builds a model's chat-template renderer from <c>tokenizer.chat_template</c>. Until the
/// template engine lands, a renderer must be supplied through <see cref="LutraModelOptions.ChatRenderer"/>.
/// </summary>
public static class ChatTemplateSeam
{
    public static IChatPromptRenderer FromGguf(GgufMetadata metadata, ITextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (metadata.GetString("tokenizer.chat_template") is null)
            throw new NotSupportedException("the model has no chat template ('tokenizer.chat_template' is missing)");
        throw new NotSupportedException("this build cannot render chat templates yet; supply an IChatPromptRenderer");
    }
}
