using System.Collections.Concurrent;
using System.Text;
using System.Text.RegularExpressions;
using Lutra.Tokenizers.Unicode;

namespace Lutra.Tokenizers.Bpe;

/// <summary>One regex of a pre-tokenizer: splits the code points [start, end) into piece lengths.</summary>
internal abstract class SplitStep
{
    public abstract void Split(SplitText text, int start, int end, List<int> lengths);
}

/// <summary>
/// A pattern run by the .NET regex engine the way llama.cpp runs it through std::regex: patterns using
/// <c>\p{N|L|P|M|S}</c> run on the category-collapsed view with each category rewritten to its stand-in
/// char plus its ASCII members; other patterns run on the code-point view.
/// </summary>
internal sealed class RegexStep : SplitStep
{
    private static readonly ConcurrentDictionary<string, RegexStep> Cache = new(StringComparer.Ordinal);

    private readonly Regex _regex;
    private readonly bool _collapsed;

    private RegexStep(string pattern)
    {
        _collapsed = UsesCategories(pattern);
        var net = _collapsed ? Collapse(pattern) : pattern;
        _regex = new Regex(net, RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    public static RegexStep Of(string pattern) => Cache.GetOrAdd(pattern, p => new RegexStep(p));

    public override void Split(SplitText text, int start, int end, List<int> lengths)
    {
        var input = _collapsed ? text.Collapsed : text.Wide;
        var last = start;
        for (var m = _regex.Match(input, start, end - start); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0)
                continue;
            if (m.Index > last)
                lengths.Add(m.Index - last);
            lengths.Add(m.Length);
            last = m.Index + m.Length;
        }
        if (last < end)
            lengths.Add(end - last);
    }

    private static readonly string[] Categories = [@"\p{N}", @"\p{L}", @"\p{P}", @"\p{M}", @"\p{S}"];

    private static bool UsesCategories(string pattern) => Categories.Any(pattern.Contains);

    /// <summary>llama.cpp's rewrite of <c>\p{X}</c> for the collapsed view (a class outside [], members inside).</summary>
    private static string Collapse(string pattern)
    {
        if (pattern.Any(c => c >= 0x80))
            throw new NotSupportedException("a pre-tokenizer regex mixes Unicode categories with non-ASCII characters");
        var sb = new StringBuilder(pattern.Length * 2);
        var inside = false;
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '[' && (i == 0 || pattern[i - 1] != '\\'))
            {
                sb.Append('[');
                inside = true;
                continue;
            }
            if (inside && c == ']' && pattern[i - 1] != '\\')
            {
                sb.Append(']');
                inside = false;
                continue;
            }
            if (c == '\\' && i + 4 < pattern.Length && pattern[i + 1] == 'p' && pattern[i + 2] == '{' && pattern[i + 4] == '}')
            {
                var members = pattern[i + 3] switch
                {
                    'N' => SplitText.CollapsedNumber + "0-9",
                    'L' => SplitText.CollapsedLetter + "A-Za-z",
                    'P' => SplitText.CollapsedPunctuation + @"!-#%-*,-/:-;?-@\[-\]_\{\}",
                    'M' => SplitText.CollapsedMark.ToString(),
                    'S' => SplitText.CollapsedSymbol + @"\$\+<->\^`\|",
                    _ => null,
                };
                if (members is not null)
                {
                    sb.Append(inside ? members : "[" + members + "]");
                    i += 4;
                    continue;
                }
            }
            sb.Append(c);
        }
        return sb.ToString();
    }
}

/// <summary>Records piece ends while a hand-written matcher walks [start, end).</summary>
internal struct PieceWriter(List<int> lengths, int start)
{
    private int _prevEnd = start;

    public void EndAt(int end)
    {
        if (end > _prevEnd)
            lengths.Add(end - _prevEnd);
        _prevEnd = end;
    }
}

/// <summary>
/// The GPT-2 pattern <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)</c> as a
/// direct scan over code points (llama.cpp does the same; it is exact for supplementary-plane letters,
/// which a UTF-16 regex would miss).
/// </summary>
internal sealed class Gpt2Step : SplitStep
{
    public override void Split(SplitText text, int start, int end, List<int> lengths)
    {
        var cps = text.Codepoints;
        var flags = text.Flags;
        CodepointFlags F(int p, ReadOnlySpan<CodepointFlags> fl) => p < end ? fl[p] : CodepointFlags.None;
        var w = new PieceWriter(lengths, start);
        var pos = start;
        while (pos < end)
        {
            var cp = cps[pos];
            if (cp == '\'' && pos + 1 < end)
            {
                var next = cps[pos + 1];
                if (next is 's' or 't' or 'm' or 'd')
                {
                    pos += 2;
                    w.EndAt(pos);
                    continue;
                }
                if (pos + 2 < end)
                {
                    var next2 = cps[pos + 2];
                    if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l'))
                    {
                        pos += 3;
                        w.EndAt(pos);
                        continue;
                    }
                }
            }

            var lead = cp == ' ' ? 1 : 0;
            var f2 = F(pos + lead, flags);
            if ((f2 & CodepointFlags.Letter) != 0)
            {
                pos += lead;
                while ((F(pos, flags) & CodepointFlags.Letter) != 0)
                    pos++;
                w.EndAt(pos);
                continue;
            }
            if ((f2 & CodepointFlags.Number) != 0)
            {
                pos += lead;
                while ((F(pos, flags) & CodepointFlags.Number) != 0)
                    pos++;
                w.EndAt(pos);
                continue;
            }
            if (IsOther(f2))
            {
                pos += lead;
                while (IsOther(F(pos, flags)))
                    pos++;
                w.EndAt(pos);
                continue;
            }

            var spaces = 0;
            while ((F(pos + spaces, flags) & CodepointFlags.Whitespace) != 0)
                spaces++;
            if (spaces > 1 && pos + spaces < end)
            {
                pos += spaces - 1; // \s+(?!\S): leave the last whitespace for the next word
                w.EndAt(pos);
                continue;
            }
            pos += spaces > 0 ? spaces : 1;
            w.EndAt(pos);
        }
    }

    /// <summary><c>[^\s\p{L}\p{N}]</c> for an in-range code point.</summary>
    internal static bool IsOther(CodepointFlags f) =>
        f != CodepointFlags.None && (f & (CodepointFlags.Whitespace | CodepointFlags.Letter | CodepointFlags.Number)) == 0;
}

/// <summary>
/// The Llama-3 pattern <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>
/// as a direct scan over code points.
/// </summary>
internal sealed class Llama3Step : SplitStep
{
    public override void Split(SplitText text, int start, int end, List<int> lengths)
    {
        var cps = text.Codepoints;
        var flags = text.Flags;
        CodepointFlags F(int p, ReadOnlySpan<CodepointFlags> fl) => p < end ? fl[p] : CodepointFlags.None;
        int C(int p, ReadOnlySpan<int> c) => p < end ? c[p] : -1;
        var w = new PieceWriter(lengths, start);
        var pos = start;
        while (pos < end)
        {
            var cp = cps[pos];
            var f = flags[pos];
            if (cp == '\'' && pos + 1 < end)
            {
                var next = Codepoints.ToLower(cps[pos + 1]);
                if (next is 's' or 't' or 'm' or 'd')
                {
                    pos += 2;
                    w.EndAt(pos);
                    continue;
                }
                if (pos + 2 < end)
                {
                    var next2 = Codepoints.ToLower(cps[pos + 2]);
                    if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l'))
                    {
                        pos += 3;
                        w.EndAt(pos);
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (!(cp == '\r' || cp == '\n' || (f & CodepointFlags.Number) != 0)
                && ((f & CodepointFlags.Letter) != 0 || (F(pos + 1, flags) & CodepointFlags.Letter) != 0))
            {
                pos++;
                while ((F(pos, flags) & CodepointFlags.Letter) != 0)
                    pos++;
                w.EndAt(pos);
                continue;
            }

            // \p{N}{1,3}
            if ((f & CodepointFlags.Number) != 0)
            {
                var run = pos;
                while ((F(pos, flags) & CodepointFlags.Number) != 0)
                {
                    pos++;
                    if (pos - run >= 3)
                    {
                        w.EndAt(pos);
                        run = pos;
                    }
                }
                w.EndAt(pos);
                continue;
            }

            //  ?[^\s\p{L}\p{N}]+[\r\n]*
            var lead = cp == ' ' ? 1 : 0;
            if (Gpt2Step.IsOther(F(pos + lead, flags)))
            {
                pos += lead;
                while (Gpt2Step.IsOther(F(pos, flags)))
                    pos++;
                while (C(pos, cps) is '\r' or '\n')
                    pos++;
                w.EndAt(pos);
                continue;
            }

            var spaces = 0;
            var lastLineBreakEnd = 0;
            while ((F(pos + spaces, flags) & CodepointFlags.Whitespace) != 0)
            {
                if (cps[pos + spaces] is '\r' or '\n')
                    lastLineBreakEnd = pos + spaces + 1;
                spaces++;
            }
            if (lastLineBreakEnd > 0)
            {
                pos = lastLineBreakEnd; // \s*[\r\n]+
                w.EndAt(pos);
                continue;
            }
            if (spaces > 1 && pos + spaces < end)
            {
                pos += spaces - 1; // \s+(?!\S)
                w.EndAt(pos);
                continue;
            }
            pos += spaces > 0 ? spaces : 1;
            w.EndAt(pos);
        }
    }
}

/// <summary>
/// DeepSeek-LLM's <c>\s?[letters]+</c>, where [letters] is an explicit list of cased-letter ranges (Latin,
/// Greek, Cyrillic, Armenian, Georgian, Cherokee, Glagolitic, Coptic, … and a few beyond the BMP). Scanned
/// over code points because .NET character classes cannot hold supplementary-plane ranges.
/// </summary>
internal sealed class DeepSeekLetterStep : SplitStep
{
    // Transcribed from the class in llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM pattern.
    private static readonly (int First, int Last)[] Ranges =
    [
        (0x0041, 0x005A), (0x0061, 0x007A), (0x00B5, 0x00B5), (0x00C0, 0x00D6), (0x00D8, 0x00F6), (0x00F8, 0x01BA),
        (0x01BC, 0x01BF), (0x01C4, 0x0293), (0x0295, 0x02AF), (0x0370, 0x0373), (0x0376, 0x0377), (0x037B, 0x037D),
        (0x037F, 0x037F), (0x0386, 0x0386), (0x0388, 0x038A), (0x038C, 0x038C), (0x038E, 0x03A1), (0x03A3, 0x03F5),
        (0x03F7, 0x0481), (0x048A, 0x052F), (0x0531, 0x0556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD),
        (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15),
        (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B),
        (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4),
        (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC),
        (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124),
        (0x2126, 0x2126), (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F),
        (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE),
        (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787), (0xA78B, 0xA78E),
        (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F),
        (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF),
        (0x1E900, 0x1E943),
    ];

    private static bool InClass(int cp)
    {
        int lo = 0, hi = Ranges.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >> 1;
            if (cp < Ranges[mid].First)
                hi = mid - 1;
            else if (cp > Ranges[mid].Last)
                lo = mid + 1;
            else
                return true;
        }
        return false;
    }

    public override void Split(SplitText text, int start, int end, List<int> lengths)
    {
        var cps = text.Codepoints;
        var flags = text.Flags;
        var last = start;
        var pos = start;
        while (pos < end)
        {
            int matchStart;
            if ((flags[pos] & CodepointFlags.Whitespace) != 0 && pos + 1 < end && InClass(cps[pos + 1]))
                matchStart = pos;
            else if (InClass(cps[pos]))
                matchStart = pos;
            else
            {
                pos++;
                continue;
            }
            pos = matchStart + 1;
            while (pos < end && InClass(cps[pos]))
                pos++;
            if (matchStart > last)
                lengths.Add(matchStart - last);
            lengths.Add(pos - matchStart);
            last = pos;
        }
        if (last < end)
            lengths.Add(end - last);
    }
}
