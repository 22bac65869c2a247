namespace Lutra.Tokenizers.Bpe;

/// <summary>
/// A BPE pre-tokenizer: the regex list llama.cpp selects by <c>tokenizer.ggml.pre</c>, applied in sequence
/// (each step re-splits every piece of the previous step; text between matches stays a piece of its own).
/// Pieces are kept as code-point lengths, as llama.cpp's <c>unicode_regex_split</c> does.
/// </summary>
internal sealed class PreTokenizer
{
    private readonly SplitStep[] _steps;

    private PreTokenizer(string name, params SplitStep[] steps)
    {
        Name = name;
        _steps = steps;
    }

    public string Name { get; }

    /// <summary>Splits <paramref name="text"/> into piece lengths (in code points), written to <paramref name="lengths"/>.</summary>
    public void Split(SplitText text, List<int> lengths, List<int> scratch)
    {
        lengths.Clear();
        if (text.Count == 0)
            return;
        lengths.Add(text.Count);
        foreach (var step in _steps)
        {
            scratch.Clear();
            var start = 0;
            foreach (var length in lengths)
            {
                step.Split(text, start, start + length, scratch);
                start += length;
            }
            lengths.Clear();
            lengths.AddRange(scratch);
        }
    }

    // The pattern texts below are llama.cpp's (llama-vocab.cpp, after C-string unescaping). The GPT-2 and
    // Llama-3 patterns run through hand-written matchers there, everything else through std::regex.
    private const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

    private const string Qwen2 =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string DeepSeek3Words =
        @"[!""#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Bloom = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+";

    private const string CjkRuns = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

    private const string Tekken =
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The pre-tokenizer for a <c>tokenizer.ggml.pre</c> value, or null if llama.cpp does not know it.</summary>
    public static PreTokenizer? ForName(string name) => name switch
    {
        "default" => new(name, RegexStep.Of(@"[\p{P}\$\+<=>\^~\|]+"), new Gpt2Step(), RegexStep.Of(@"\p{N}+"),
            RegexStep.Of("[0-9][0-9][0-9]")),
        "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "dbrx" or "smaug-bpe" or "chatglm-bpe" =>
            new(name, new Llama3Step()),
        "qwen2" or "deepseek-r1-qwen" or "megrez" or "stablelm2" => new(name, RegexStep.Of(Qwen2)),
        "gpt-2" or "phi-2" or "roberta-bpe" or "gigachat" or "jina-es" or "jina-de" or "jina-v1-en" or "jina-v2-es"
            or "jina-v2-de" or "jina-v2-code" or "mpt" or "olmo" or "jais" => new(name, new Gpt2Step()),
        "starcoder" or "refact" or "codeshell" or "exaone" or "minerva-7b" or "command-r" or "smollm" =>
            new(name, RegexStep.Of(@"\p{N}"), new Gpt2Step()),
        "falcon" => new(name, RegexStep.Of(@"[\p{P}\$\+<=>\^~\|`]+"), new Gpt2Step(), RegexStep.Of("[0-9][0-9][0-9]")),
        "deepseek-llm" => new(name, RegexStep.Of("[\r\n]"), new DeepSeekLetterStep(),
            RegexStep.Of("\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"),
            // std::regex's "$" only matches at the end of the input; .NET's would also match before a final \n.
            RegexStep.Of(@"\s+\z"),
            RegexStep.Of(CjkRuns), RegexStep.Of(@"\p{N}+")),
        "deepseek-coder" => new(name, RegexStep.Of("[\r\n]"), RegexStep.Of(@"\s?\p{L}+"), RegexStep.Of(@"\s?\p{P}+"),
            RegexStep.Of(CjkRuns), RegexStep.Of(@"\p{N}")),
        "deepseek-v3" => new(name, RegexStep.Of(@"\p{N}{1,3}"), RegexStep.Of("[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+"),
            RegexStep.Of(DeepSeek3Words)),
        "bloom" or "poro-chat" or "gpt3-finnish" => new(name, RegexStep.Of(Bloom)),
        "viking" => new(name, RegexStep.Of(Bloom), RegexStep.Of(@"\p{N}")),
        "tekken" => new(name, RegexStep.Of(Tekken)),
        "chameleon" => new(name, RegexStep.Of("<sentinel:[0-9]+>"), RegexStep.Of("(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
            RegexStep.Of("([\\t\\n]|    |  )"), RegexStep.Of(@"\p{N}"), RegexStep.Of(@"[\p{P}!-/:-@\[-`{-~]"),
            new Gpt2Step()),
        _ => null,
    };

    internal static bool IsGpt2Pattern(string pattern) => pattern == Gpt2;
}
