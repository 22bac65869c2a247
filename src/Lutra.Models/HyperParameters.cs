using Lutra.Gguf;

namespace Lutra.Models;

/// <summary>How positions are stretched beyond the trained context (formats.md §4.2, §5.3).</summary>
public enum RopeScaling
{
    None,
    Linear,
    Yarn,
}

/// <summary>
/// The hyper-parameters of a llama-family model, read from <c>ARCH.*</c> metadata with llama.cpp's defaults
/// (formats.md §4.2). <see cref="VocabSize"/> comes from the token embedding's shape.
/// </summary>
public sealed record HyperParameters
{
    public required Architecture Architecture { get; init; }
    public required int ContextLength { get; init; }   // n_ctx_train
    public required int EmbeddingLength { get; init; } // n_embd
    public required int LayerCount { get; init; }      // n_layer
    public required int FeedForwardLength { get; init; } // n_ff
    public required int HeadCount { get; init; }       // n_head
    public required int HeadCountKv { get; init; }     // n_head_kv (GQA when < n_head)
    public required int HeadDim { get; init; }         // head_dim_k == head_dim_v
    public required int VocabSize { get; init; }       // n_vocab
    public required float RmsEpsilon { get; init; }
    public required int RopeDimensions { get; init; }  // n_rot
    public required float RopeFreqBase { get; init; }
    public required float RopeFreqScale { get; init; } // 1 / rope.scaling.factor
    public required RopeScaling RopeScaling { get; init; }
    public required float RopeAttnFactor { get; init; }
    public required int RopeOriginalContext { get; init; } // n_ctx_orig for YaRN

    public int KvDim => HeadDim * HeadCountKv;       // n_embd_k_gqa
    public int QDim => HeadDim * HeadCount;

    /// <summary>Query heads sharing one KV head.</summary>
    public int GroupSize => HeadCount / HeadCountKv;

    public static HyperParameters FromMetadata(GgufMetadata metadata, int vocabSize)
    {
        var arch = Architecture.Get(metadata.GetString("general.architecture"));
        var p = arch.Name + ".";
        var nEmbd = Required(metadata, p + "embedding_length");
        var nHead = PerLayerConstant(metadata, p + "attention.head_count") ?? 0;
        if (nHead <= 0)
            throw new GgufFormatException($"metadata '{p}attention.head_count' is missing or zero");
        var nHeadKv = PerLayerConstant(metadata, p + "attention.head_count_kv") ?? nHead;
        if (nHeadKv <= 0 || nHead % nHeadKv != 0)
            throw new GgufFormatException($"attention.head_count {nHead} is not a multiple of head_count_kv {nHeadKv}");
        var headDim = Optional(metadata, p + "attention.key_length") ?? nEmbd / nHead;
        var valueDim = Optional(metadata, p + "attention.value_length") ?? nEmbd / nHead;
        if (valueDim != headDim)
            throw new NotSupportedException($"key_length {headDim} != value_length {valueDim} is not supported");
        var nRot = Optional(metadata, p + "rope.dimension_count") ?? headDim;
        if (nRot != headDim || nRot % 2 != 0)
            throw new NotSupportedException($"rope.dimension_count {nRot} must equal the head size {headDim} (and be even)");
        var eps = metadata.GetFloat32(p + "attention.layer_norm_rms_epsilon")
            ?? throw new GgufFormatException($"metadata '{p}attention.layer_norm_rms_epsilon' is missing");

        var factor = metadata.GetFloat32(p + "rope.scaling.factor") ?? metadata.GetFloat32(p + "rope.scale_linear") ?? 0f;
        var scalingName = metadata.GetString(p + "rope.scaling.type") ?? "linear";
        var scaling = scalingName switch
        {
            "none" => RopeScaling.None,
            "linear" => RopeScaling.Linear,
            "yarn" => RopeScaling.Yarn,
            _ => throw new NotSupportedException($"rope scaling type '{scalingName}' is not supported (none, linear, yarn)"),
        };
        var nCtxTrain = Required(metadata, p + "context_length");
        return new HyperParameters
        {
            Architecture = arch,
            ContextLength = nCtxTrain,
            EmbeddingLength = nEmbd,
            LayerCount = Required(metadata, p + "block_count"),
            FeedForwardLength = PerLayerConstant(metadata, p + "feed_forward_length") ?? 0,
            HeadCount = nHead,
            HeadCountKv = nHeadKv,
            HeadDim = headDim,
            VocabSize = vocabSize,
            RmsEpsilon = eps,
            RopeDimensions = nRot,
            RopeFreqBase = metadata.GetFloat32(p + "rope.freq_base") ?? 10000f,
            RopeFreqScale = factor == 0f ? 1f : 1f / factor,
            RopeScaling = scaling,
            RopeAttnFactor = metadata.GetFloat32(p + "rope.scaling.attn_factor") ?? 1f,
            RopeOriginalContext = Optional(metadata, p + "rope.scaling.original_context_length") ?? nCtxTrain,
        };
    }

    private static int Required(GgufMetadata m, string key) =>
        Optional(m, key) ?? throw new GgufFormatException($"metadata key '{key}' is missing");

    private static int? Optional(GgufMetadata m, string key)
    {
        var v = m.GetInteger(key);
        if (v is null)
            return null;
        if (v < 0 || v > int.MaxValue)
            throw new GgufFormatException($"metadata key '{key}' = {v} is out of range");
        return (int)v.Value;
    }

    /// <summary>A key that may be a scalar or a per-layer array; Lutra supports arrays only when all layers agree.</summary>
    private static int? PerLayerConstant(GgufMetadata m, string key)
    {
        if (!m.TryGetValue(key, out var value))
            return null;
        if (!value.IsArray)
            return Optional(m, key);
        var values = value.Value switch
        {
            uint[] u => u.Select(x => (long)x).ToArray(),
            int[] i => i.Select(x => (long)x).ToArray(),
            _ => throw new GgufFormatException($"metadata key '{key}' is an array of an unexpected type"),
        };
        if (values.Length == 0 || values.Any(x => x != values[0]))
            throw new NotSupportedException($"per-layer values of '{key}' differ between layers; not supported");
        return checked((int)values[0]);
    }
}
