using Lutra.Gguf;
using Lutra.Tokenizers;

namespace Lutra.Runtime.Tokenization;

/// <summary>The one place that builds a model's tokenizer from its GGUF metadata.</summary>
public static class TokenizerSeam
{
    public static ITextTokenizer FromGguf(GgufMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return new VocabularyTokenizer(Tokenizer.FromGguf(metadata));
    }

    /// <summary>Lutra.Tokenizers' tokenizer behind the runtime's tokenizer interface.</summary>
    private sealed class VocabularyTokenizer(Tokenizer tokenizer) : ITextTokenizer
    {
        public int? BosId => tokenizer.Bos == Tokenizer.NoToken ? null : tokenizer.Bos;

        public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false) =>
            tokenizer.Encode(text, addSpecial, parseSpecial);

        public bool IsEndOfGeneration(int tokenId) => tokenizer.IsEndOfGeneration(tokenId);

        public ITokenStreamDecoder CreateStreamingDecoder() => new StreamDecoder(new StreamingDetokenizer(tokenizer));
    }

    private sealed class StreamDecoder(StreamingDetokenizer detokenizer) : ITokenStreamDecoder
    {
        public string Append(int tokenId) => detokenizer.Append(tokenId);

        public string Flush() => detokenizer.Flush();
    }
}
