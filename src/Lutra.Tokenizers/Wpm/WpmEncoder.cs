using System.Runtime.InteropServices;
using Lutra.Tokenizers.Unicode;

namespace Lutra.Tokenizers.Wpm;

/// <summary>
/// BERT WordPiece as llama.cpp runs it: normalize (first code point of each character's NFD form, lower case,
/// control characters dropped), split on whitespace with punctuation, ASCII symbols and CJK ideographs as
/// words of their own, then per word (prefixed with U+2581) greedy longest-prefix matching; a word with an
/// unmatched position becomes [UNK] as a whole.
/// </summary>
internal sealed class WpmEncoder(Vocabulary vocab)
{
    private static ReadOnlySpan<byte> WordPrefix => "\u2581"u8;

    public void Encode(ReadOnlySpan<byte> utf8, List<int> output)
    {
        var cps = new List<int>(utf8.Length);
        Utf8.DecodeCodepoints(utf8, cps);
        var word = new List<byte>(64);
        word.AddRange(WordPrefix);
        foreach (var raw in cps)
        {
            var cp = Codepoints.NfdFirst(raw);
            var flags = Codepoints.Flags(cp);
            if ((flags & CodepointFlags.Whitespace) != 0)
            {
                EndWord(word, output);
                continue;
            }
            if (cp == 0 || cp == 0xFFFD || (flags & CodepointFlags.Control) != 0)
                continue;
            var lower = Codepoints.ToLower(cp);
            if ((flags & CodepointFlags.Punctuation) != 0 || (cp < 0x7F && (flags & CodepointFlags.Symbol) != 0) || IsChineseChar(cp))
            {
                EndWord(word, output);
                Utf8.Append(word, lower);
                EndWord(word, output);
            }
            else
            {
                Utf8.Append(word, lower);
            }
        }
        EndWord(word, output);
    }

    private void EndWord(List<byte> word, List<int> output)
    {
        if (word.Count > WordPrefix.Length)
            EncodeWord(CollectionsMarshal.AsSpan(word), output);
        word.RemoveRange(WordPrefix.Length, word.Count - WordPrefix.Length);
    }

    private void EncodeWord(ReadOnlySpan<byte> word, List<int> output)
    {
        var first = output.Count;
        for (var i = 0; i < word.Length; i++)
        {
            var matched = false;
            for (var j = Math.Min(word.Length, i + vocab.MaxTokenLength + 1); j > i; j--)
            {
                if (vocab.TryGetId(word[i..j], out var id))
                {
                    output.Add(id);
                    matched = true;
                    i = j - 1;
                    break;
                }
            }
            if (!matched)
            {
                output.RemoveRange(first, output.Count - first);
                break;
            }
        }
        if (output.Count == first)
            output.Add(vocab.UnknownId);
    }

    // HF's BERT ranges, including its 0x2B920 start where the Unicode block begins at 0x2B820.
    private static bool IsChineseChar(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF
            or >= 0x2A700 and <= 0x2B73F or >= 0x2B740 and <= 0x2B81F or >= 0x2B920 and <= 0x2CEAF
            or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
