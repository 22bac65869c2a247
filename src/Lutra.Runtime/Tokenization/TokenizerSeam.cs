using Lutra.Gguf;

namespace Lutra.Runtime.Tokenization;

/// <summary>
/// The one place that builds a model's tokenizer from its GGUF metadata. Until Lutra.Tokenizers lands,
/// text input needs a tokenizer supplied through <see cref="LutraModelOptions.Tokenizer"/>.
/// </summary>
public static class TokenizerSeam
{
    public static ITextTokenizer FromGguf(GgufMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        var kind = metadata.GetString("tokenizer.ggml.model") ?? "(none)";
        throw new NotSupportedException(
            $"this build has no tokenizer for '{kind}' vocabularies yet; pass token ids or supply an ITextTokenizer");
    }
}
