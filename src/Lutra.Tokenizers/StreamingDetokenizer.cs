using System.Buffers;
using System.Text;

namespace Lutra.Tokenizers;

/// <summary>
/// Turns generated tokens into text as they arrive. Each call returns only whole characters: a character whose
/// UTF-8 bytes are split across tokens (SPM byte tokens, byte-level BPE pieces) is held back until its last
/// byte arrives. Pieces are joined as llama.cpp prints them during generation (token_to_piece, no leading-space
/// stripping or space clean-up). Not thread-safe; use one per generation.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _renderSpecial;
    private readonly List<byte> _pending = [];

    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="renderSpecial">Print control tokens (e.g. &lt;|im_end|&gt;) as their text instead of nothing.</param>
    public StreamingDetokenizer(Tokenizer tokenizer, bool renderSpecial = false)
    {
        _tokenizer = tokenizer;
        _renderSpecial = renderSpecial;
    }

    /// <summary>Adds one token; returns the text completed by it (possibly empty).</summary>
    public string Append(int id)
    {
        _pending.AddRange(_tokenizer.TokenPieceBytes(id, _renderSpecial));
        var pending = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending);
        var complete = CompletePrefixLength(pending);
        if (complete == 0)
            return string.Empty;
        var text = Encoding.UTF8.GetString(pending[..complete]);
        _pending.RemoveRange(0, complete);
        return text;
    }

    /// <summary>Returns whatever is still held back (an unfinished character becomes U+FFFD) and clears it.</summary>
    public string Flush()
    {
        var text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        _pending.Clear();
        return text;
    }

    /// <summary>Forgets held-back bytes, for reuse in a new generation.</summary>
    public void Reset() => _pending.Clear();

    /// <summary>Length of the longest prefix that does not end inside a still-completable UTF-8 sequence.</summary>
    private static int CompletePrefixLength(ReadOnlySpan<byte> bytes)
    {
        var offset = 0;
        while (offset < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes[offset..], out _, out var consumed);
            if (status == OperationStatus.NeedMoreData)
                return offset;
            offset += consumed; // valid, or invalid bytes that no later byte can complete
        }
        return offset;
    }
}
