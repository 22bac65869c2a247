using Lutra.Tokenizers.Unicode;

namespace Lutra.Tokenizers.Bpe;

/// <summary>
/// One text fragment as the pre-tokenizer sees it: its code points, their flags, and (built on demand) the two
/// one-char-per-code-point views llama.cpp runs std::regex on. Reused between fragments to avoid allocation.
/// </summary>
internal sealed class SplitText
{
    /// <summary>Stand-ins for non-ASCII code points in the category-collapsed view (private-use chars).</summary>
    public const char CollapsedOther = '\uE0D0';
    public const char CollapsedNumber = '\uE0D1';
    public const char CollapsedLetter = '\uE0D2';
    public const char CollapsedPunctuation = '\uE0D3';
    public const char CollapsedMark = '\uE0D4';
    public const char CollapsedSymbol = '\uE0D5';

    private int[] _cps = new int[64];
    private CodepointFlags[] _flags = new CodepointFlags[64];
    private char[] _collapsed = new char[64];
    private char[] _wide = new char[64];
    private string? _collapsedString;
    private string? _wideString;

    public int Count { get; private set; }

    public ReadOnlySpan<int> Codepoints => _cps.AsSpan(0, Count);

    public ReadOnlySpan<CodepointFlags> Flags => _flags.AsSpan(0, Count);

    public void Reset(List<int> codepoints)
    {
        Count = codepoints.Count;
        if (_cps.Length < Count)
        {
            var size = Math.Max(Count, _cps.Length * 2);
            _cps = new int[size];
            _flags = new CodepointFlags[size];
            _collapsed = new char[size];
            _wide = new char[size];
        }
        for (var i = 0; i < Count; i++)
        {
            var cp = codepoints[i];
            _cps[i] = cp;
            _flags[i] = Unicode.Codepoints.Flags(cp);
        }
        _collapsedString = null;
        _wideString = null;
    }

    /// <summary>
    /// llama.cpp's "collapsed" text for regexes with <c>\p{..}</c>: ASCII kept, non-ASCII whitespace → \v, every
    /// other non-ASCII code point → one char standing for its category.
    /// </summary>
    public string Collapsed
    {
        get
        {
            if (_collapsedString is null)
            {
                for (var i = 0; i < Count; i++)
                {
                    var cp = _cps[i];
                    var f = _flags[i];
                    _collapsed[i] = cp < 0x80 ? (char)cp
                        : (f & CodepointFlags.Whitespace) != 0 ? '\v'
                        : (f & CodepointFlags.Number) != 0 ? CollapsedNumber
                        : (f & CodepointFlags.Letter) != 0 ? CollapsedLetter
                        : (f & CodepointFlags.Punctuation) != 0 ? CollapsedPunctuation
                        : (f & CodepointFlags.Mark) != 0 ? CollapsedMark
                        : (f & CodepointFlags.Symbol) != 0 ? CollapsedSymbol
                        : CollapsedOther;
                }
                _collapsedString = new string(_collapsed, 0, Count);
            }
            return _collapsedString;
        }
    }

    /// <summary>
    /// The view for regexes without categories (llama.cpp's std::wregex path): code points as they are, except
    /// non-ASCII whitespace → \v. Code points beyond the BMP → U+FFFF, which no such pattern names.
    /// </summary>
    public string Wide
    {
        get
        {
            if (_wideString is null)
            {
                for (var i = 0; i < Count; i++)
                {
                    var cp = _cps[i];
                    _wide[i] = cp > 0xFFFF ? '\uFFFF'
                        : cp >= 0x80 && (_flags[i] & CodepointFlags.Whitespace) != 0 ? '\v'
                        : (char)cp;
                }
                _wideString = new string(_wide, 0, Count);
            }
            return _wideString;
        }
    }
}
