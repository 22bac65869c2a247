namespace Lutra.Runtime.Tokenization;

/// <summary>What generation needs from a tokenizer: text → ids, end-of-generation ids, and ids → text as a stream.</summary>
public interface ITextTokenizer
{
    /// <param name="addSpecial">Add BOS/EOS as the vocabulary's add_bos/add_eos flags say.</param>
    /// <param name="parseSpecial">Recognise special-token text (e.g. "&lt;s&gt;") in <paramref name="text"/>.</param>
    int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false);

    /// <summary>EOS, EOT and similar ids that end a generation.</summary>
    bool IsEndOfGeneration(int tokenId);

    int? BosId { get; }

    /// <summary>A decoder that turns ids into text incrementally (partial UTF-8 sequences are held back).</summary>
    ITokenStreamDecoder CreateStreamingDecoder();
}

/// <summary>Incremental ids → text.</summary>
public interface ITokenStreamDecoder
{
    /// <summary>Text completed by this token (may be empty while a multi-byte character is still incomplete).</summary>
    string Append(int tokenId);

    /// <summary>Whatever is still held back, e.g. an incomplete trailing UTF-8 sequence.</summary>
    string Flush();
}
