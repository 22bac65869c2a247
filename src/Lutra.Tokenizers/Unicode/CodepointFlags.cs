using System.Globalization;
using System.Text;

namespace Lutra.Tokenizers.Unicode;

/// <summary>
/// The per-code-point classification llama.cpp's tokenizers use (ggml's unicode-data tables): one general
/// category group (letter, number, punctuation, symbol, mark, separator, control) plus the regex-<c>\s</c>
/// whitespace flag. ggml derives these from Python's <c>regex</c> module: <c>\p{C}</c> there includes
/// unassigned code points, so they count as control here too.
/// </summary>
[Flags]
internal enum CodepointFlags : byte
{
    None = 0,
    Number = 1 << 0,
    Letter = 1 << 1,
    Separator = 1 << 2,
    Mark = 1 << 3,
    Punctuation = 1 << 4,
    Symbol = 1 << 5,
    Control = 1 << 6,
    Whitespace = 1 << 7,
}

internal static class Codepoints
{
    // The BMP is looked up in a table built once; supplementary planes are classified on demand.
    private static readonly CodepointFlags[] Bmp = BuildBmp();

    public static CodepointFlags Flags(int cp) =>
        (uint)cp < (uint)Bmp.Length ? Bmp[cp] : Classify(cp);

    public static bool IsWhitespace(int cp) => (Flags(cp) & CodepointFlags.Whitespace) != 0;

    public static bool IsLetter(int cp) => (Flags(cp) & CodepointFlags.Letter) != 0;

    public static bool IsNumber(int cp) => (Flags(cp) & CodepointFlags.Number) != 0;

    /// <summary>Python's <c>chr(cp).lower()[0]</c>: the first code point of the lower-case form.</summary>
    public static int ToLower(int cp)
    {
        if (cp < 0x80)
            return cp is >= 'A' and <= 'Z' ? cp + 32 : cp;
        if (cp == 0x130)
            return 'i'; // full mapping "i\u0307"; Python keeps its first code point
        return Rune.IsValid(cp) ? Rune.ToLowerInvariant(new Rune(cp)).Value : cp;
    }

    /// <summary>The first code point of the NFD decomposition (ggml's <c>unicode_cpts_normalize_nfd</c>).</summary>
    public static int NfdFirst(int cp)
    {
        if (cp < 0xC0)
            return cp;
        var runs = NfdTable.Runs;
        int lo = 0, hi = runs.Length / 3 - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >> 1;
            if (cp < runs[mid * 3])
                hi = mid - 1;
            else if (cp > runs[mid * 3 + 1])
                lo = mid + 1;
            else
                return runs[mid * 3 + 2];
        }
        return cp;
    }

    /// <summary>Python <c>regex</c> <c>\s</c>: the Unicode White_Space property.</summary>
    public static bool IsWhitespaceCodepoint(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D => true,
        0x20 or 0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    private static CodepointFlags[] BuildBmp()
    {
        var table = new CodepointFlags[0x10000];
        for (var cp = 0; cp < table.Length; cp++)
            table[cp] = Classify(cp);
        return table;
    }

    private static CodepointFlags Classify(int cp)
    {
        var flags = CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CodepointFlags.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
                or UnicodeCategory.OtherNumber => CodepointFlags.Number,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark
                or UnicodeCategory.EnclosingMark => CodepointFlags.Mark,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
                or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation => CodepointFlags.Punctuation,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
                or UnicodeCategory.OtherSymbol => CodepointFlags.Symbol,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator
                or UnicodeCategory.ParagraphSeparator => CodepointFlags.Separator,
            _ => CodepointFlags.Control,
        };
        if (IsWhitespaceCodepoint(cp))
            flags |= CodepointFlags.Whitespace;
        return flags;
    }
}
