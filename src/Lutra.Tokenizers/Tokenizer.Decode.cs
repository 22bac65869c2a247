using System.Text;
using Lutra.Tokenizers.Bpe;

namespace Lutra.Tokenizers;

public sealed partial class Tokenizer
{
    /// <summary>
    /// The bytes a token stands for (llama_token_to_piece). Control and unknown tokens render as their text only
    /// when <paramref name="special"/> is set. An SPM byte token yields one byte, possibly part of a UTF-8 sequence.
    /// </summary>
    public ReadOnlySpan<byte> TokenPieceBytes(int id, bool special = true)
    {
        CheckId(id);
        if (!special && _vocab.Types[id] is TokenType.Control or TokenType.Unknown)
            return [];
        return _pieces[id];
    }

    /// <summary>The token's piece as text (incomplete UTF-8 sequences show as U+FFFD; use
    /// <see cref="StreamingDetokenizer"/> to join pieces).</summary>
    public string TokenPiece(int id, bool special = true) => Encoding.UTF8.GetString(TokenPieceBytes(id, special));

    /// <summary>
    /// Whole-sequence detokenization as llama_detokenize: pieces concatenated, the first piece's leading space
    /// dropped when the vocabulary adds a space prefix (unless a leading BOS was removed), then, for vocabularies
    /// that ask for it, HF's clean_up_tokenization_spaces.
    /// </summary>
    public byte[] DecodeToUtf8(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false)
    {
        var removeSpace = AddSpacePrefix;
        if (removeSpecial && AddBos && ids.Length > 0 && ids[0] == Bos)
        {
            removeSpace = false;
            ids = ids[1..];
        }
        if (removeSpecial && AddEos && ids.Length > 0 && ids[^1] == Eos)
            ids = ids[..^1];

        var text = new List<byte>(ids.Length * 4);
        foreach (var id in ids)
        {
            var piece = TokenPieceBytes(id, unparseSpecial);
            if (removeSpace && piece.Length > 0 && piece[0] == (byte)' ')
                piece = piece[1..];
            removeSpace = false;
            text.AddRange(piece);
        }
        var bytes = text.ToArray();
        return CleanSpaces ? CleanUpSpaces(bytes) : bytes;
    }

    public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false) =>
        Encoding.UTF8.GetString(DecodeToUtf8(ids, removeSpecial, unparseSpecial));

    /// <summary>llama.cpp's three in-place passes over the bytes, kept byte-for-byte (including their quirks).</summary>
    private static byte[] CleanUpSpaces(byte[] text)
    {
        // pass 1: " ?", " !", " .", " ," lose the space
        var total1 = text.Length;
        var total = total1 > 0 ? 1 : 0;
        for (var i = 1; i < total1; i++)
        {
            var x = text[i];
            if (text[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',')
                total--;
            text[total++] = x;
        }

        // pass 2: " ' " becomes "'"
        var total2 = total;
        total = total2 > 0 ? 1 : 0;
        for (var i = 1; i < total2; i++)
        {
            var x = text[i];
            if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                total--;
                text[++i] = 0;
            }
            text[total++] = x;
        }

        // pass 3: " 's", " 'm", " 're", " 've" lose the space (not " 't", " 'd", " 'll")
        var total3 = total;
        total = total3 > 0 ? 1 : 0;
        for (var i = 1; i < total3; i++)
        {
            var x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                var x1 = text[i + 1];
                if (x1 is (byte)'s' or (byte)'m')
                    total--;
                else if (i + 2 < total3 && ((x1 == 'r' && text[i + 2] == 'e') || (x1 == 'v' && text[i + 2] == 'e')))
                    total--;
            }
            text[total++] = x;
        }
        return text.AsSpan(0, total).ToArray();
    }

    private static byte[] ComputePiece(TokenizerKind kind, TokenType type, ReadOnlySpan<byte> text)
    {
        if (type is TokenType.Unknown or TokenType.Control or TokenType.UserDefined)
            return text.ToArray();
        switch (kind)
        {
            case TokenizerKind.Spm or TokenizerKind.Wpm when type == TokenType.Normal:
                return Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(text).Replace('\u2581', ' '));
            case TokenizerKind.Spm or TokenizerKind.Wpm when type == TokenType.Byte:
                // "<0xHH>": llama.cpp reads the two hex digits at offset 3
                return text.Length >= 5 && byte.TryParse(Encoding.ASCII.GetString(text.Slice(3, 2)),
                    System.Globalization.NumberStyles.HexNumber, null, out var b) ? [b] : [];
            case TokenizerKind.Bpe when type == TokenType.Normal:
                return DecodeByteLevel(text);
            default:
                return [];
        }
    }

    private static byte[] DecodeByteLevel(ReadOnlySpan<byte> text)
    {
        var output = new List<byte>(text.Length);
        var cps = new List<int>(text.Length);
        Unicode.Utf8.DecodeCodepoints(text, cps);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var cp in cps)
        {
            if (ByteLevel.TryDecode(cp, out var b))
            {
                output.Add(b);
                continue;
            }
            // llama.cpp's marker for a code point outside the byte table (it appends the whole token text)
            output.AddRange("[UNK_BYTE_0x"u8);
            var n = Unicode.Utf8.Encode(cp, utf8);
            for (var k = 0; k < n; k++)
                output.AddRange(Encoding.ASCII.GetBytes(utf8[k].ToString("x2")));
            output.AddRange(text);
            output.Add((byte)']');
        }
        return [.. output];
    }
}
