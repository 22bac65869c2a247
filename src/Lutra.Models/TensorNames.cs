namespace Lutra.Models;

/// <summary>GGUF tensor names of the llama-family graph (llama.cpp's llama-arch tables), declared once.</summary>
public static class TensorNames
{
    public const string TokenEmbedding = "token_embd.weight";
    public const string OutputNorm = "output_norm.weight";
    public const string Output = "output.weight";
    public const string RopeFreqs = "rope_freqs.weight";

    public static string AttnNorm(int layer) => $"blk.{layer}.attn_norm.weight";
    public static string AttnQ(int layer) => $"blk.{layer}.attn_q.weight";
    public static string AttnK(int layer) => $"blk.{layer}.attn_k.weight";
    public static string AttnV(int layer) => $"blk.{layer}.attn_v.weight";
    public static string AttnOutput(int layer) => $"blk.{layer}.attn_output.weight";
    public static string AttnQBias(int layer) => $"blk.{layer}.attn_q.bias";
    public static string AttnKBias(int layer) => $"blk.{layer}.attn_k.bias";
    public static string AttnVBias(int layer) => $"blk.{layer}.attn_v.bias";
    public static string AttnOutputBias(int layer) => $"blk.{layer}.attn_output.bias";
    public static string FfnNorm(int layer) => $"blk.{layer}.ffn_norm.weight";
    public static string FfnGate(int layer) => $"blk.{layer}.ffn_gate.weight";
    public static string FfnUp(int layer) => $"blk.{layer}.ffn_up.weight";
    public static string FfnDown(int layer) => $"blk.{layer}.ffn_down.weight";
    public static string FfnGateBias(int layer) => $"blk.{layer}.ffn_gate.bias";
    public static string FfnUpBias(int layer) => $"blk.{layer}.ffn_up.bias";
    public static string FfnDownBias(int layer) => $"blk.{layer}.ffn_down.bias";
}
