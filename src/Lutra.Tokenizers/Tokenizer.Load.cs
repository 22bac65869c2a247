using System.Text;
using Lutra.Gguf;
using Lutra.Tokenizers.Bpe;
using Lutra.Tokenizers.Spm;
using Lutra.Tokenizers.Wpm;

namespace Lutra.Tokenizers;

public sealed partial class Tokenizer
{
    // Texts that mark a token as ending a turn (llama.cpp's text-based auto-detection).
    private static readonly string[] EotTexts =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>"];
    private static readonly string[] EogTexts =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>"];
    private static readonly string[] FimPreTexts = ["<|fim_prefix|>", "<fim-prefix>", "<\uFF5Cfim\u2581begin\uFF5C>", "<PRE>"];
    private static readonly string[] FimSufTexts = ["<|fim_suffix|>", "<fim-suffix>", "<\uFF5Cfim\u2581hole\uFF5C>", "<SUF>"];
    private static readonly string[] FimMidTexts = ["<|fim_middle|>", "<fim-middle>", "<\uFF5Cfim\u2581end\uFF5C>", "<MID>"];
    private static readonly string[] FimPadTexts = ["<|fim_pad|>", "<fim-pad>", "<PAD>"];
    private static readonly string[] FimRepTexts = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"];
    private static readonly string[] FimSepTexts = ["<|file_sep|>"];

    /// <summary>Opens a GGUF file and builds its tokenizer.</summary>
    public static Tokenizer FromGgufFile(string path)
    {
        using var file = GgufFile.Open(path);
        return FromGguf(file.Metadata);
    }

    /// <summary>
    /// Builds the tokenizer described by a GGUF file's <c>tokenizer.*</c> metadata.
    /// </summary>
    /// <exception cref="InvalidDataException">The tokenizer metadata is missing or inconsistent.</exception>
    /// <exception cref="NotSupportedException">The tokenizer model or pre-tokenizer is one Lutra does not implement.</exception>
    public static Tokenizer FromGguf(GgufMetadata metadata) => new(metadata);

    private Tokenizer(GgufMetadata m)
    {
        var model = m.GetString("tokenizer.ggml.model")
            ?? throw new InvalidDataException("GGUF has no tokenizer (metadata key 'tokenizer.ggml.model' is missing)");
        Kind = model switch
        {
            "llama" => TokenizerKind.Spm,
            "gpt2" => TokenizerKind.Bpe,
            "bert" => TokenizerKind.Wpm,
            "t5" or "rwkv" or "plamo2" => throw new NotSupportedException($"tokenizer model '{model}' is not supported yet"),
            "no_vocab" or "none" => throw new NotSupportedException("this GGUF has no vocabulary (tokenizer.ggml.model = 'no_vocab')"),
            _ => throw new InvalidDataException($"unknown tokenizer model '{model}'"),
        };

        var tokens = m.GetArray<GgufString>("tokenizer.ggml.tokens")
            ?? throw new InvalidDataException("GGUF has no token list (tokenizer.ggml.tokens)");
        var n = tokens.Length;
        var scores = m.GetArray<float>("tokenizer.ggml.scores");
        if (scores is not null && scores.Length != n)
            throw new InvalidDataException($"tokenizer.ggml.scores has {scores.Length} entries for {n} tokens");
        var rawTypes = m.GetArray<int>("tokenizer.ggml.token_type");
        if (rawTypes is not null && rawTypes.Length != n)
            throw new InvalidDataException($"tokenizer.ggml.token_type has {rawTypes.Length} entries for {n} tokens");

        var texts = new byte[n][];
        var types = new TokenType[n];
        for (var i = 0; i < n; i++)
        {
            texts[i] = tokens[i].Length > 0 ? tokens[i].Bytes.ToArray() : Encoding.UTF8.GetBytes($"[EMPTY_{i}]");
            var t = rawTypes?[i] ?? (int)TokenType.Normal;
            types[i] = t is >= 0 and <= 6 ? (TokenType)t : TokenType.Undefined;
        }
        _vocab = new Vocabulary(texts, types, scores ?? new float[n]);

        // Defaults by model; GGUF keys override them below.
        int bos = NoToken, eos = NoToken, unk = NoToken, sep = NoToken, pad = NoToken, mask = NoToken;
        bool addBos = false, addEos = false, addSpacePrefix = false, cleanSpaces = false, ignoreMerges = false;
        PreTokenizer? pre = null;
        switch (Kind)
        {
            case TokenizerKind.Spm:
                (bos, eos, unk) = (1, 2, 0);
                (addSpacePrefix, addBos) = (true, true);
                break;
            case TokenizerKind.Wpm:
                (bos, unk, sep, pad, mask) = (101, 100, 102, 0, 103);
                (cleanSpaces, addBos) = (true, true);
                break;
            case TokenizerKind.Bpe:
                (bos, eos) = (11, 11);
                cleanSpaces = true;
                var preName = m.GetString("tokenizer.ggml.pre");
                if (string.IsNullOrEmpty(preName))
                    preName = "default";
                pre = Bpe.PreTokenizer.ForName(preName)
                    ?? throw new NotSupportedException($"unknown pre-tokenizer type: '{preName}'");
                PreTokenizer = preName;
                switch (preName)
                {
                    case "llama3" or "llama-v3" or "llama-bpe" or "falcon3":
                        (ignoreMerges, addBos) = (true, true);
                        break;
                    case "tekken":
                        (ignoreMerges, addBos, cleanSpaces) = (true, true, false);
                        break;
                    case "chameleon":
                        (addBos, cleanSpaces) = (true, false);
                        break;
                    case "chatglm-bpe":
                        bos = NoToken;
                        break;
                    case "deepseek-llm" or "deepseek-coder" or "deepseek-v3" or "qwen2" or "deepseek-r1-qwen"
                        or "command-r" or "smollm" or "poro-chat" or "viking":
                        cleanSpaces = false;
                        break;
                }
                break;
        }
        addSpacePrefix = m.GetBool("tokenizer.ggml.add_space_prefix") ?? addSpacePrefix;

        int Id(string key, int fallback)
        {
            var v = m.GetInteger("tokenizer.ggml." + key);
            return v is { } id && id >= 0 && id < n ? (int)id : fallback; // out-of-range ids keep the default, as llama.cpp does
        }
        Bos = Id("bos_token_id", bos);
        Eos = Id("eos_token_id", eos);
        Eot = Id("eot_token_id", NoToken);
        Eom = Id("eom_token_id", NoToken);
        _vocab.UnknownId = Id("unknown_token_id", unk);
        Sep = Id("seperator_token_id", sep);
        Pad = Id("padding_token_id", pad);
        Mask = Id("mask_token_id", mask);
        FimPrefix = Id("fim_pre_token_id", Id("prefix_token_id", NoToken));
        FimSuffix = Id("fim_suf_token_id", Id("suffix_token_id", NoToken));
        FimMiddle = Id("fim_mid_token_id", Id("middle_token_id", NoToken));
        FimPad = Id("fim_pad_token_id", NoToken);
        FimRepo = Id("fim_rep_token_id", NoToken);
        FimSeparator = Id("fim_sep_token_id", NoToken);
        AddBos = m.GetBool("tokenizer.ggml.add_bos_token") ?? addBos;
        AddEos = m.GetBool("tokenizer.ggml.add_eos_token") ?? addEos;
        AddSpacePrefix = addSpacePrefix;
        CleanSpaces = cleanSpaces;
        IgnoreMerges = ignoreMerges;

        // Tokens found by text are forced to CONTROL, as llama.cpp does. When several texts match, the lowest
        // id wins (llama.cpp walks a hash map, so its choice is unspecified).
        Eot = Eot >= 0 ? Eot : FindByText(EotTexts, makeControl: true);
        Eom = Eom >= 0 ? Eom : FindByText(["<|eom_id|>"], makeControl: true);
        FimPrefix = FimPrefix >= 0 ? FimPrefix : FindByText(FimPreTexts, makeControl: true);
        FimSuffix = FimSuffix >= 0 ? FimSuffix : FindByText(FimSufTexts, makeControl: true);
        FimMiddle = FimMiddle >= 0 ? FimMiddle : FindByText(FimMidTexts, makeControl: true);
        FimPad = FimPad >= 0 ? FimPad : FindByText(FimPadTexts, makeControl: true);
        FimRepo = FimRepo >= 0 ? FimRepo : FindByText(FimRepTexts, makeControl: true);
        FimSeparator = FimSeparator >= 0 ? FimSeparator : FindByText(FimSepTexts, makeControl: true);

        _endOfGeneration = [];
        foreach (var id in new[] { FimPad, FimRepo, FimSeparator, Eos, Eot, Eom })
        {
            if (id >= 0)
                _endOfGeneration.Add(id);
        }
        foreach (var text in EogTexts)
        {
            if (_vocab.TryGetId(Encoding.UTF8.GetBytes(text), out var id))
            {
                _endOfGeneration.Add(id);
                _vocab.Types[id] = TokenType.Control;
            }
        }

        _specialCandidates = [.. Enumerable.Range(0, n)
            .Where(id => _vocab.Types[id] is TokenType.Control or TokenType.UserDefined or TokenType.Unknown)
            .OrderByDescending(id => _vocab.Text(id).Length)];

        // Strip attributes cannot be stored in GGUF; llama.cpp sets them from the model and pre-tokenizer names.
        var preKey = m.GetString("tokenizer.ggml.pre") ?? "";
        var modelName = (m.GetString("general.name") ?? "").ToLowerInvariant();
        if (preKey.Contains("jina-v2-de") || preKey.Contains("jina-v2-es") || preKey.Contains("jina-v2-code"))
        {
            if (_vocab.TryGetId("<mask>"u8, out var maskId))
                _stripLeft.Add(maskId);
        }
        else if (modelName.Contains("phi-3") || modelName.Contains("phi3"))
        {
            _stripRight.UnionWith(_specialCandidates);
            if (_vocab.TryGetId("</s>"u8, out var eosId))
                _stripRight.Add(eosId);
            foreach (var keep in new[] { "<unk>", "<s>", "<|endoftext|>" })
            {
                if (_vocab.TryGetId(Encoding.UTF8.GetBytes(keep), out var keepId))
                    _stripRight.Remove(keepId);
            }
        }

        _pieces = new byte[n][];
        for (var id = 0; id < n; id++)
            _pieces[id] = ComputePiece(Kind, _vocab.Types[id], _vocab.Text(id));

        switch (Kind)
        {
            case TokenizerKind.Spm:
                _spm = new SpmEncoder(_vocab);
                Newline = _spm.ByteToken((byte)'\n');
                break;
            case TokenizerKind.Bpe:
                var merges = m.GetArray<GgufString>("tokenizer.ggml.merges")
                    ?? throw new InvalidDataException("BPE vocabulary without merges (tokenizer.ggml.merges is missing)");
                _bpe = new BpeEncoder(_vocab, merges, pre!, IgnoreMerges);
                Newline = _vocab.TryGetId("\u010A"u8, out var nl) ? nl : NoToken;
                break;
            case TokenizerKind.Wpm:
                _wpm = new WpmEncoder(_vocab);
                Newline = Pad;
                break;
        }
    }

    private int FindByText(string[] texts, bool makeControl)
    {
        var best = NoToken;
        foreach (var text in texts)
        {
            if (_vocab.TryGetId(Encoding.UTF8.GetBytes(text), out var id) && (best < 0 || id < best))
                best = id;
        }
        if (best >= 0 && makeControl)
            _vocab.Types[best] = TokenType.Control;
        return best;
    }
}
