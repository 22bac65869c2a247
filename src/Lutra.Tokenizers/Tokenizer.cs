using System.Runtime.InteropServices;
using System.Text;
using Lutra.Gguf;
using Lutra.Tokenizers.Bpe;
using Lutra.Tokenizers.Spm;
using Lutra.Tokenizers.Wpm;

namespace Lutra.Tokenizers;

/// <summary>
/// Text ↔ token ids for a GGUF model, reproducing llama.cpp's tokenizer (llama-vocab.cpp): SPM ("llama"),
/// byte-level BPE ("gpt2") with its named pre-tokenizers, and WordPiece ("bert"). Immutable after loading and
/// safe to use from several threads.
/// </summary>
public sealed partial class Tokenizer
{
    /// <summary>The id value meaning "no such token".</summary>
    public const int NoToken = -1;

    private readonly Vocabulary _vocab;
    private readonly byte[][] _pieces;           // token_to_piece with special rendering on
    private readonly int[] _specialCandidates;   // Control/UserDefined/Unknown ids, longest text first
    private readonly HashSet<int> _endOfGeneration;
    private readonly HashSet<int> _stripLeft = [];   // special tokens that swallow whitespace before them
    private readonly HashSet<int> _stripRight = [];  // … and after them
    private readonly SpmEncoder? _spm;
    private readonly BpeEncoder? _bpe;
    private readonly WpmEncoder? _wpm;

    [ThreadStatic]
    private static BpeEncoder.Session? t_bpeSession;

    public TokenizerKind Kind { get; }

    /// <summary>The BPE pre-tokenizer name in effect ("default" when the GGUF has none); null for SPM/WPM.</summary>
    public string? PreTokenizer { get; }

    public int VocabSize => _vocab.Count;

    public int Bos { get; }
    public int Eos { get; }
    public int Eot { get; }
    public int Eom { get; }
    public int Unk => _vocab.UnknownId;
    public int Sep { get; }
    public int Pad { get; }
    public int Mask { get; }
    public int FimPrefix { get; }
    public int FimSuffix { get; }
    public int FimMiddle { get; }
    public int FimPad { get; }
    public int FimRepo { get; }
    public int FimSeparator { get; }

    /// <summary>The token that encodes a lone "\n" byte (SPM: &lt;0x0A&gt;; BPE: "Ċ"), or <see cref="NoToken"/>.</summary>
    public int Newline { get; }

    /// <summary>Whether <see cref="Encode(string, bool, bool)"/> with addSpecial prepends BOS (GGUF add_bos_token overrides the default).</summary>
    public bool AddBos { get; }

    /// <summary>Whether encoding with addSpecial appends EOS (GGUF add_eos_token overrides the default).</summary>
    public bool AddEos { get; }

    /// <summary>SPM: a space is prepended to the first text fragment and to text following a special token.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>Whole-sequence decoding applies HF's clean_up_tokenization_spaces.</summary>
    public bool CleanSpaces { get; }

    /// <summary>BPE: a pre-tokenized piece that is itself a token is emitted without merging (Llama-3 family).</summary>
    public bool IgnoreMerges { get; }

    /// <summary>Every id that ends generation: EOS, EOT, EOM, FIM pad/repo/separator and end-of-turn tokens found by text.</summary>
    public IReadOnlySet<int> EndOfGenerationIds => _endOfGeneration;

    public bool IsEndOfGeneration(int id) => _endOfGeneration.Contains(id);

    public TokenType GetTokenType(int id) => _vocab.Types[CheckId(id)];

    /// <summary>The token's text exactly as stored in the vocabulary (byte-level encoded for BPE, ▁ for SPM spaces).</summary>
    public ReadOnlySpan<byte> GetTokenText(int id) => _vocab.Text(CheckId(id));

    public float GetTokenScore(int id) => _vocab.Scores[CheckId(id)];

    /// <summary>Finds the id of a token by its stored text.</summary>
    public bool TryGetTokenId(string text, out int id) => _vocab.TryGetId(Encoding.UTF8.GetBytes(text), out id);

    // ---------------------------------------------------------------------------------------------------------
    // Encoding

    /// <summary>Tokenizes <paramref name="text"/>. Special (control) tokens written in the text are recognized only
    /// when <paramref name="parseSpecial"/> is set; user-defined tokens always are.</summary>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        var output = new List<int>(text.Length / 3 + 4);
        Encode(text.AsSpan(), output, addSpecial, parseSpecial);
        return [.. output];
    }

    /// <summary>Appends the tokens of <paramref name="text"/> to <paramref name="output"/>.</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> output, bool addSpecial = true, bool parseSpecial = false)
    {
        var utf8 = Encoding.UTF8.GetBytes(text.ToArray());
        EncodeUtf8(utf8, output, addSpecial, parseSpecial);
    }

    /// <summary>
    /// Writes the tokens of <paramref name="text"/> to <paramref name="destination"/> and returns their count, or,
    /// when the destination is too small, the negated count needed (llama_tokenize's convention).
    /// </summary>
    public int Encode(ReadOnlySpan<char> text, Span<int> destination, bool addSpecial = true, bool parseSpecial = false)
    {
        var output = new List<int>(destination.Length);
        Encode(text, output, addSpecial, parseSpecial);
        if (output.Count > destination.Length)
            return -output.Count;
        CollectionsMarshal.AsSpan(output).CopyTo(destination);
        return output.Count;
    }

    public int[] EncodeUtf8(ReadOnlySpan<byte> utf8, bool addSpecial = true, bool parseSpecial = false)
    {
        var output = new List<int>(utf8.Length / 3 + 4);
        EncodeUtf8(utf8, output, addSpecial, parseSpecial);
        return [.. output];
    }

    /// <summary>Tokenizes UTF-8 text (the form llama.cpp works on); invalid bytes are treated as U+FFFD.</summary>
    public void EncodeUtf8(ReadOnlySpan<byte> utf8, List<int> output, bool addSpecial = true, bool parseSpecial = false)
    {
        var fragments = Partition(utf8, parseSpecial);
        switch (Kind)
        {
            case TokenizerKind.Spm:
                EncodeSpm(utf8, fragments, output, addSpecial);
                break;
            case TokenizerKind.Bpe:
                if (addSpecial && AddBos)
                    output.Add(RequireSpecial(Bos, "BOS"));
                var session = t_bpeSession ??= new BpeEncoder.Session();
                foreach (var f in fragments)
                {
                    if (f.Token >= 0)
                        output.Add(f.Token);
                    else
                        _bpe!.Encode(utf8.Slice(f.Start, f.Length), output, session);
                }
                if (addSpecial && AddEos)
                    output.Add(RequireSpecial(Eos, "EOS"));
                break;
            case TokenizerKind.Wpm:
                if (addSpecial)
                    output.Add(RequireSpecial(Bos, "CLS"));
                foreach (var f in fragments)
                {
                    if (f.Token >= 0)
                        output.Add(f.Token);
                    else
                        _wpm!.Encode(utf8.Slice(f.Start, f.Length), output);
                }
                if (addSpecial)
                    output.Add(RequireSpecial(Sep, "SEP"));
                break;
        }
    }

    private void EncodeSpm(ReadOnlySpan<byte> utf8, List<Fragment> fragments, List<int> output, bool addSpecial)
    {
        if (addSpecial && AddBos)
            output.Add(RequireSpecial(Bos, "BOS"));
        var prevSpecial = true;
        var escaped = new List<byte>();
        foreach (var f in fragments)
        {
            if (f.Token >= 0)
            {
                output.Add(f.Token);
                prevSpecial = true;
                continue;
            }
            escaped.Clear();
            if (AddSpacePrefix && prevSpecial)
                escaped.AddRange(SpmSpace);
            foreach (var b in utf8.Slice(f.Start, f.Length))
            {
                if (b == (byte)' ')
                    escaped.AddRange(SpmSpace);
                else
                    escaped.Add(b);
            }
            _spm!.Encode(CollectionsMarshal.AsSpan(escaped), output);
            prevSpecial = false;
        }
        if (addSpecial && AddEos)
            output.Add(RequireSpecial(Eos, "EOS"));
    }

    private static ReadOnlySpan<byte> SpmSpace => "\u2581"u8;

    private static int RequireSpecial(int id, string name) =>
        id >= 0 ? id : throw new InvalidOperationException($"the vocabulary has no {name} token to add");

    private readonly record struct Fragment(int Token, int Start, int Length);

    /// <summary>
    /// Splits text around special tokens (llama.cpp's tokenizer_st_partition): for each candidate, longest text
    /// first, every remaining raw-text fragment is cut at each occurrence, left to right.
    /// </summary>
    private List<Fragment> Partition(ReadOnlySpan<byte> utf8, bool parseSpecial)
    {
        var fragments = new List<Fragment>();
        if (utf8.IsEmpty)
            return fragments;
        fragments.Add(new Fragment(NoToken, 0, utf8.Length));
        var next = new List<Fragment>();
        foreach (var id in _specialCandidates)
        {
            var type = _vocab.Types[id];
            if (!parseSpecial && type is TokenType.Control or TokenType.Unknown)
                continue;
            var special = _vocab.Text(id);
            next.Clear();
            var changed = false;
            foreach (var f in fragments)
            {
                if (f.Token >= 0)
                {
                    next.Add(f);
                    continue;
                }
                var start = f.Start;
                var end = f.Start + f.Length;
                while (start < end)
                {
                    var at = utf8[start..end].IndexOf(special);
                    if (at < 0)
                        break;
                    changed = true;
                    var left = at;
                    if (_stripLeft.Contains(id))
                    {
                        while (left > 0 && IsAsciiSpace(utf8[start + left - 1]))
                            left--;
                    }
                    if (left > 0)
                        next.Add(new Fragment(NoToken, start, left));
                    next.Add(new Fragment(id, 0, 0));
                    start += at + special.Length;
                    if (_stripRight.Contains(id))
                    {
                        while (start < end && IsAsciiSpace(utf8[start]))
                            start++;
                    }
                }
                if (start < end)
                    next.Add(new Fragment(NoToken, start, end - start));
            }
            if (changed)
                (fragments, next) = (next, fragments);
        }
        return fragments;
    }

    private static bool IsAsciiSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\v' or (byte)'\f' or (byte)'\r';

    private int CheckId(int id) =>
        (uint)id < (uint)_vocab.Count ? id : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary (0..{_vocab.Count - 1})");
}
